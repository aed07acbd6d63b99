"""PgBouncer itself failing in the middle of a sale: killed with SIGKILL and started again,
or paused from its admin console (`PAUSE`, then `RESUME`).

The gateway reaches PostgreSQL only through a PgBouncer of the test's own (transaction
pooling, `PG_POOLER=transaction`), and MongoDB over a slow link, so that the fault finds
sagas between their pivot and their confirm. The fault comes
after a third of the stock's worth of answers, and is undone once it was felt: by the
gateway (a PostgreSQL call tried again: a brief outage), or by its clients (claims told
503, their retries spent: a long one). Once no saga is in flight, every answer is read
against PostgreSQL and MongoDB directly, and every saga must have ended by itself.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from devstack.pgbouncer import admin_command, kill_pgbouncer, restart_pgbouncer, running_pgbouncer
from devstack.servers import Server
from devstack.stack import StackUrls
from orchestrator.bootstrap import open_tool_components
from orchestrator.settings import Settings
from sagas.records import SagaRecord, SagaStatus
from tests.support.apart import saga_log_apart
from tests.support.api import create, details, metric
from tests.support.cli import coupon_saga
from tests.support.invariants import assert_invariants, assert_written_once
from tests.support.logs import json_lines
from tests.support.proxy import ProxyInThread
from tests.support.sale import CUT, Answer, Sale, claimants, judge, outcomes
from tests.support.servers import gateway_process
from tests.support.settings import changed
from tests.support.waiting import FAST_RECOVERY, eventually, sagas_in_flight

STOCK, USERS, REPEATS, CONCURRENCY = 600, 2000, 400, 64
FAULT_AFTER_ANSWERS = 200  # a third of the stock: most of the sale comes after the fault
# A try cut by the step timeout (a paused PgBouncer holds even asyncpg's cancel) is
# followed by another within the retries: the brief outages are told by that retry.
TIMINGS = {
    **FAST_RECOVERY,
    "step_timeout_seconds": 2.0,
    "saga_retry_seconds": 3.0,
    "saga_lease_seconds": 4.0,
    "recovery_interval_seconds": 0.5,
}
# Each answer from MongoDB comes this late. A worker's sagas go through their steps
# together (admitted 16 at a time, each step one batched round trip), so with a quick
# `record` the fault, triggered by an answer, would find them all at their next reserve;
# here it finds most of them writing their claim document (the pivot), to reach their
# confirm with PgBouncer down.
MONGO_DELAY_SECONDS = 0.2
# How long PgBouncer stays down: until the gateway retried a PostgreSQL call (BRIEF), or
# until this many claims were told 503, their retries spent (LONG: SAGA_RETRY_SECONDS).
BRIEF, LONG = 0, 10


class SagasParked(AssertionError):
    """Sagas parked for an operator: a claim past its pivot left with its unit held."""


@dataclass(frozen=True)
class Fault:
    """What is done to PgBouncer, and what undoes it."""

    do: Callable[[Server], object]
    undo: Callable[[Server], object]


KILLED = Fault(kill_pgbouncer, restart_pgbouncer)
PAUSED = Fault(
    lambda bouncer: admin_command(bouncer, "PAUSE"),  # returns once no transaction runs
    lambda bouncer: admin_command(bouncer, "RESUME"),
)


OUTAGES = [pytest.param(BRIEF, id="brief"), pytest.param(LONG, id="long")]


@pytest.fixture
def bouncer(stack: StackUrls) -> Iterator[Server]:
    """A PgBouncer of the test's own: the session's goes on serving the other tests."""
    with running_pgbouncer(stack.database_url) as server:
        yield server


async def postgres_retries(http: aiohttp.ClientSession, base: str) -> float:
    """The claim sagas' PostgreSQL calls tried again so far (reserve and confirm)."""
    steps = ("reserve", "confirm")
    return sum([await metric(http, base, "saga_step_retries_total", step=s) for s in steps])


@dataclass(frozen=True)
class Settled:
    answers: list[Answer]
    claimed_by: list[str]
    sagas: dict[str, SagaRecord]  # as they ended by themselves
    parked: list[str]  # ids of those parked for an operator (resumed since)


async def sale_through(
    http, settings: Settings, bouncer: Server, tmp_path: Path, name: str, fault: Fault, outage: int
) -> Settled:
    """The whole sale with `fault` in it; returns once no saga is in flight, the parked
    ones resumed and the audit (run through PgBouncer, as an operator's) clean."""
    far_mongo = closing(ProxyInThread(settings.mongo_url, delay=MONGO_DELAY_SECONDS))
    log_path = tmp_path / "gateway.log"
    async with saga_log_apart(settings) as apart:
        pooled = changed(
            apart.settings, {**TIMINGS, "database_url": bouncer.url, "pg_pooler": "transaction"}
        )
        with far_mongo as proxied:
            far = {"mongo_url": proxied.proxy.url_through(settings.mongo_url)}
            with gateway_process(changed(pooled, far), log_path) as base:
                await create(http, base, name, STOCK)
                answers = await sell_through(http, base, bouncer, name, fault, outage)

                async def none_in_flight() -> bool:
                    return not await sagas_in_flight(apart.saga_log)

                await eventually(none_in_flight)
                claimed_by = (await details(http, base, name))["claimed_by"]
                sagas = {s.saga_id: s for s in await apart.saga_log.find(None, 10_000)}
        assert set(Counter(a.status for a in answers)) <= {200, 409, 503}  # none cut off
        parked = await finish_parked(pooled, sagas, log_path)
        code, out, err = await coupon_saga(pooled, "audit", "--coupon", name)
        assert code == 0, out + err
    return Settled(answers, claimed_by, sagas, parked)


async def sell_through(
    http, base: str, bouncer: Server, name: str, fault: Fault, outage: int
) -> list[Answer]:
    """The sale's answers, `fault` done to PgBouncer after FAULT_AFTER_ANSWERS of them and
    undone once `outage` claims were told 503 (0: once the gateway retried a PostgreSQL
    call, a brief outage)."""
    sale = Sale(http, name, claimants(USERS, REPEATS, seed=34), CONCURRENCY, lambda: base)
    selling = asyncio.ensure_future(sale.run())
    await eventually(sale.answered(FAULT_AFTER_ANSWERS))
    retried = await postgres_retries(http, base)
    await asyncio.to_thread(fault.do, bouncer)

    async def felt() -> bool:
        if outage:
            return await sale.answered(outage, 503)()
        return await postgres_retries(http, base) > retried

    await eventually(felt)
    await asyncio.to_thread(fault.undo, bouncer)
    answers = await selling
    retries = await postgres_retries(http, base) - retried
    print(f"answers {dict(outcomes(answers))}; {retries:.0f} PostgreSQL calls retried")
    return answers


async def finish_parked(
    settings: Settings, sagas: dict[str, SagaRecord], gateway_log: Path
) -> list[str]:
    """The sagas that did not end by themselves (parked as failed), each told (the first
    few: history and log lines) and then resumed as an operator would, so the rest of the
    test can judge the sale."""
    parked = [record.saga_id for record in sagas.values() if not record.status.finished]
    for saga_id in parked[:3]:
        print((await coupon_saga(settings, "show", saga_id))[1])
        for line in json_lines(gateway_log):
            if line.get("saga_id") == saga_id:
                print(f"{line['time']}  {line['level']}  {line['message']}")
    async with open_tool_components(settings) as operator:  # `coupon-saga resume`, in here
        for saga_id in parked:
            resumed = await operator.recoverer.recover(saga_id, parked=True)
            assert resumed.status is SagaStatus.COMPLETED, resumed
    return parked


async def assert_the_answers_tell_the_truth(pg, mongo, name: str, settled: Settled) -> None:
    """Judged once every saga ended; then, last, whether any had to be resumed by hand."""
    facts = await assert_invariants(pg, mongo, name)
    verdict = judge(settled.answers, facts, settled.claimed_by)
    ends = Counter(s.status.value for s in settled.sagas.values())
    print(
        f"sagas {dict(ends)}; false answers {verdict.false_answers}; "
        f"{len(facts.claims)} claims, {facts.remaining_amount} left"
    )
    assert CUT not in verdict.statuses
    assert verdict.false_answers == []
    await assert_written_once(pg, mongo, name)
    if settled.parked:
        raise SagasParked(f"{len(settled.parked)} sagas parked, resumed by hand")


@pytest.mark.parametrize("outage", OUTAGES)
async def test_pgbouncer_killed_and_restarted_mid_sale(
    http, settings, pg, mongo, bouncer, tmp_path, name, outage
):
    settled = await sale_through(http, settings, bouncer, tmp_path, name, KILLED, outage)
    await assert_the_answers_tell_the_truth(pg, mongo, name, settled)


@pytest.mark.parametrize("outage", OUTAGES)
async def test_pgbouncer_paused_and_resumed_mid_sale(
    http, settings, pg, mongo, bouncer, tmp_path, name, outage
):
    settled = await sale_through(http, settings, bouncer, tmp_path, name, PAUSED, outage)
    await assert_the_answers_tell_the_truth(pg, mongo, name, settled)
