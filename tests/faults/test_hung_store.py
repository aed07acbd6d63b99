"""A store that accepts the connection and never answers: a bounded 503, then recovery.

A hung server is worse than a dead one: nothing is refused, every call just waits. Each
try of a saga step is bounded by STEP_TIMEOUT_SECONDS and a timed-out try counts as "may
have applied", so the client gets a 503 in bounded time and the saga is left compensating
with its unit held; once the store answers again, recovery finishes the undo.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from sagas.records import SagaEvent, SagaRecord, SagaStatus
from tests.support.apart import Apart, saga_log_apart
from tests.support.api import claim, create
from tests.support.cli import coupon_saga
from tests.support.invariants import assert_invariants
from tests.support.proxy import CuttableProxy, through
from tests.support.servers import app_in_process
from tests.support.waiting import FAST_RECOVERY, eventually, held_at_least

HUNG_STORE = {
    **FAST_RECOVERY,
    "step_timeout_seconds": 0.5,
    "saga_store_attempts": 2,
    # Longer than a step's worst case (tries x (timeout + asyncpg's cancel wait)) with room
    # for a busy machine, as the setting requires: the driver that gives up is the one
    # that tried, not a recoverer that took the saga over while it still tried.
    "saga_lease_seconds": 10.0,
}
HANG_GUARD_SECONDS = 30.0  # "bounded": far above the ~2 s the retries and undo take


@pytest.fixture
async def apart(settings) -> AsyncIterator[Apart]:
    async with saga_log_apart(settings) as apart:
        yield apart


async def the_saga(apart: Apart) -> SagaRecord:
    """The one saga of the test (its saga log holds nothing else)."""
    (record,) = await apart.saga_log.find(None, 10)
    return record


async def ended(apart: Apart) -> bool:
    return not (await the_saga(apart)).status.in_flight


async def claim_while_hung(http, base: str, proxy: CuttableProxy, coupon: str):
    """Hang the store, claim, and return the answer with how long it took to come."""
    await proxy.hang()
    started = time.monotonic()
    async with asyncio.timeout(HANG_GUARD_SECONDS):
        answer = await claim(http, base, "patient", coupon)
    took = time.monotonic() - started
    print(f"answered {answer[0]} after {took:.2f}s")
    return answer


def timeouts(history: list[SagaEvent]) -> list[tuple[str, str]]:
    """(step, phase) of every event that gave up on a try because it timed out."""
    return [(e.step, e.phase.value) for e in history if "TimeoutError" in e.error]


def gave_up_on(step: str) -> list[tuple[str, str]]:
    """Both tries of the step timed out, then both tries of its undo: left for recovery."""
    return [
        (step, "retrying"),
        (step, "failed"),
        (f"undo {step}", "retrying"),
        (step, "compensation_failed"),
    ]


async def answer_again(proxy, apart) -> None:
    """Let the store answer again and wait for recovery to end the saga."""
    await proxy.restore()
    restored = time.monotonic()
    await eventually(lambda: ended(apart))
    print(f"compensated {time.monotonic() - restored:.1f}s after the store answered again")


async def unit_back_and_audit_clean(apart, pg, mongo, name: str):
    """The saga ended compensated, its hold released, the stock whole, the audit clean."""
    record = await the_saga(apart)
    assert record.status is SagaStatus.COMPENSATED, record.error
    hold = await pg.fetchval("SELECT status FROM holds WHERE saga_id = $1", record.saga_id)
    assert hold == "released"
    facts = await assert_invariants(pg, mongo, name)
    assert (facts.remaining_amount, facts.claims) == (3, {})
    code, out, _ = await coupon_saga(apart.settings, "audit", "--coupon", name)
    assert code == 0, out
    return record


async def test_mongodb_that_never_answers_is_a_503_then_the_unit_comes_back(
    http, settings, pg, mongo, mongo_proxy, apart, name
):
    """Hung at record: the claim document may have landed, so the unit stays held until the
    undo can run; once MongoDB answers, recovery makes sure no claim document is left and
    gives the unit back."""
    hung = through(apart.settings, mongo_url=mongo_proxy).model_copy(update=HUNG_STORE)
    async with app_in_process(hung) as base:
        await create(http, base, name, 3)

        status, body = await claim_while_hung(http, base, mongo_proxy, name)

        assert (status, body["error"]) == (503, "unavailable")
        record = await the_saga(apart)
        history = await apart.saga_log.history(record.saga_id)
        assert timeouts(history) == gave_up_on("record")
        # The insert may have landed: the unit stays held until the undo is done.
        assert record.status is SagaStatus.COMPENSATING
        hold = await pg.fetchval("SELECT status FROM holds WHERE saga_id = $1", record.saga_id)
        assert hold == "held"

        await answer_again(mongo_proxy, apart)

    record = await unit_back_and_audit_clean(apart, pg, mongo, name)
    assert record.recoveries >= 1


async def test_postgresql_that_never_answers_at_reserve_takes_no_unit(
    http, settings, pg, mongo, pg_proxy, apart, name
):
    """Hung at reserve: the reserve never reaches PostgreSQL; once it answers, recovery
    writes a released tombstone for the saga and the stock is untouched."""
    hung = through(apart.settings, database_url=pg_proxy).model_copy(update=HUNG_STORE)
    async with app_in_process(hung) as base:
        await create(http, base, name, 3)

        status, body = await claim_while_hung(http, base, pg_proxy, name)

        assert (status, body["error"]) == (503, "unavailable")
        record = await the_saga(apart)
        history = await apart.saga_log.history(record.saga_id)
        assert timeouts(history) == gave_up_on("reserve")
        assert record.status is SagaStatus.COMPENSATING

        await answer_again(pg_proxy, apart)

    # The reserve never reached PostgreSQL; its undo left a released tombstone, so a late
    # reserve of this saga could take nothing.
    await unit_back_and_audit_clean(apart, pg, mongo, name)


async def test_a_claim_that_gets_no_saga_slot_in_time_is_a_503_that_took_nothing(
    http, settings, pg, mongo, mongo_proxy, apart, name
):
    """One saga slot, held by a claim hung at MongoDB: the next claim waits its turn for
    SAGA_QUEUE_SECONDS, then gets a 503, and nothing was started for it."""
    one_slot = {**HUNG_STORE, "max_concurrent_sagas": 1, "saga_queue_seconds": 0.2}
    hung = through(apart.settings, mongo_url=mongo_proxy).model_copy(update=one_slot)
    async with app_in_process(hung) as base:
        await create(http, base, name, 3)
        first = asyncio.ensure_future(claim_while_hung(http, base, mongo_proxy, name))
        await eventually(lambda: held_at_least(pg, name, 1))  # reserved, hung at record

        status, body = await claim(http, base, "queued", name)

        assert (status, body["error"]) == (503, "unavailable")
        assert body["message"] == "The service is at capacity; try again shortly."
        assert (await first)[0] == 503
        holders = await pg.fetch("SELECT user_id FROM holds WHERE coupon_name = $1", name)
        assert [row["user_id"] for row in holders] == ["patient"]
        assert len(await apart.saga_log.find(None, 10)) == 1  # no saga for "queued"

        await answer_again(mongo_proxy, apart)

    await unit_back_and_audit_clean(apart, pg, mongo, name)
