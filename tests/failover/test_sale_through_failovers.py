"""A sale through the HA topology's failovers, the gateway started on its URLs.

The issue's run: PostgreSQL replicating asynchronously, its standby lagging (its WAL
sender stopped) when the primary is killed -9 and Patroni promotes the standby. The
claims the failover lost are in MongoDB (here a FerretDB on a server of its own, as a
replica set's majority writes would keep them), and the units it seemed to free must not
be sold twice. Then the other failovers, with synchronous replication: a Patroni
switchover, the Redis master killed, a Sentinel failover. After each: every answer
judged against the stores, invariants 1-4, the audit clean, no saga left for an
operator; the refusal window (first to last 503) printed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from devstack.ha.topology import HaStack
from orchestrator.bootstrap import redis_client, redis_saga_log
from orchestrator.settings import Settings
from tests.faults.test_store_outage import claims_database
from tests.support.apart import ferretdb_apart, own_keys
from tests.support.api import create, details
from tests.support.cli import coupon_saga
from tests.support.invariants import assert_invariants
from tests.support.sale import (
    CUT,
    Answer,
    Sale,
    claimants,
    claimed_again_after,
    judge,
    outcomes,
    refused_for,
)
from tests.support.servers import gateway_process
from tests.support.settings import changed
from tests.support.waiting import all_ended, eventually

# Sent at RATE claims/s, so the sale lasts through the failover and shows when claims
# are taken again; more users than units, so the units a failover seemed to free are
# asked for.
USERS, STOCK, CONCURRENCY, RATE = 4000, 1500, 64, 200
FAULT_AT = USERS // 5
LAGGING = 50  # claims the standby never receives before its primary dies
TIMINGS = {
    "saga_lease_seconds": 4.0,
    "saga_retry_seconds": 3.0,
    "store_timeout_seconds": 1.0,
    "step_timeout_seconds": 2.0,
    "recovery_interval_seconds": 0.5,
    "hold_settle_seconds": 10.0,
}


@asynccontextmanager
async def gateway_on(
    ha: HaStack, settings: Settings, tmp_path: Path, mongo_url: str
) -> AsyncIterator[tuple[str, Settings, Any]]:
    """A gateway (two workers) on the HA URLs, its saga log under a prefix of its own;
    yields its base URL, its settings and that saga log."""
    urls = ha.urls
    on_ha = changed(
        settings,
        {
            **TIMINGS,
            "database_url": urls.database_url,
            "mongo_url": mongo_url,
            "redis_sentinels": urls.redis_sentinels,
            "redis_sentinel_master": urls.redis_sentinel_master,
            "redis_key_prefix": own_keys().prefix,
        },
    )
    async with redis_client(on_ha) as client:
        with gateway_process(on_ha, tmp_path / "gateway.log") as base:
            yield base, on_ha, redis_saga_log(on_ha, client)


async def sale_through(
    http, base: str, coupon: str, fault: Callable[[Sale], Awaitable[None]], heal: Callable[[], None]
) -> tuple[list[Answer], float | None]:
    """The sale, `fault` done after FAULT_AT answers, then `heal` (which waits for the new
    primary, or starts what was killed); returns the answers and how long after the fault
    began claims were taken again (None: none was refused)."""
    sale = Sale(http, coupon, claimants(USERS), CONCURRENCY, lambda: base, per_second=RATE)
    selling = asyncio.ensure_future(sale.run())
    await eventually(sale.answered(FAULT_AT))
    fault_began = time.monotonic()
    await fault(sale)
    await asyncio.to_thread(heal)
    answers = await selling
    return answers, claimed_again_after(answers, fault_began)


async def judged(
    http,
    base: str,
    settings: Settings,
    saga_log,
    pg,
    claims,
    coupon: str,
    row: str,
    answers,
    window: float | None,
) -> None:
    await eventually(lambda: all_ended(pg, saga_log, coupon), tries=2400)
    facts = await assert_invariants(pg, claims, coupon)
    claimed_by = (await details(http, base, coupon))["claimed_by"]
    verdict = judge(answers, facts, claimed_by)
    parked = [s for s in await saga_log.find(None, None) if not s.status.finished]
    again = (
        "no claim refused"
        if window is None
        else f"refused {refused_for(answers):.1f}s, claims taken again {window:.1f}s after "
        "the fault began"
    )
    print(
        f"{row}: answers {dict(outcomes(answers))}; {again}; "
        f"{len(facts.claims)} claims of {facts.amount}, {facts.remaining_amount} left"
    )
    assert CUT not in verdict.statuses
    assert verdict.false_answers == []
    assert parked == []
    code, out, _ = await coupon_saga(settings, "audit", "--coupon", coupon)
    assert code == 0, out


async def test_an_async_standby_promoted_behind_sells_no_unit_twice(
    http, settings, async_ha: HaStack, tmp_path, name
):
    postgres = async_ha.postgres
    async with (
        ferretdb_apart(settings.database_url, tmp_path) as ferretdb,
        gateway_on(async_ha, settings, tmp_path, ferretdb.url) as (base, on_ha, saga_log),
    ):
        await create(http, base, name, STOCK)
        old = postgres.primary()

        async def lose_the_last_commits(sale: Sale) -> None:
            await asyncio.to_thread(postgres.pause_walsender)
            # Claims answered from now on are acknowledged and never sent to the standby.
            await eventually(sale.answered(LAGGING, 200, since=len(sale.answers)))
            await asyncio.to_thread(postgres.kill_node, old)

        answers, window = await sale_through(
            http,
            base,
            name,
            lose_the_last_commits,
            lambda: postgres.wait_for_writable_primary(not_on=old),
        )
        pg = await asyncpg.create_pool(async_ha.urls.database_url, min_size=1, max_size=2)
        try:
            async with claims_database(ferretdb.url, on_ha) as claims:
                await judged(
                    http,
                    base,
                    on_ha,
                    saga_log,
                    pg,
                    claims,
                    name,
                    "async standby promoted",
                    answers,
                    window,
                )
        finally:
            await pg.close()
            await asyncio.to_thread(postgres.start_node, old)


@dataclass(frozen=True)
class Failover:
    """A failover of the synchronous topology: what does it, and what waits for its end."""

    name: str
    do: Callable[[HaStack], Any]
    done: Callable[[HaStack, Any], Any]


def _node_back(ha: HaStack, old: str) -> None:
    ha.postgres.wait_for_writable_primary(not_on=old)


FAILOVERS = [
    Failover("PostgreSQL primary killed -9", lambda ha: ha.postgres.kill_primary(), _node_back),
    Failover("Patroni switchover", lambda ha: ha.postgres.switchover(), lambda ha, new: None),
    Failover(
        "Redis master killed -9",
        lambda ha: ha.redis.kill_master(),
        lambda ha, old: ha.redis.wait_for_master(not_on=old),
    ),
    Failover("Sentinel failover", lambda ha: ha.redis.failover(), lambda ha, new: None),
    Failover("FerretDB killed", lambda ha: ha.ferretdb.kill(), lambda ha, _: ha.ferretdb.restart()),
]


@pytest.mark.parametrize("failover", FAILOVERS, ids=[f.name for f in FAILOVERS])
async def test_a_sale_through_each_failover(
    http, settings, ha: HaStack, tmp_path, name, failover: Failover
):
    """Synchronous replication: nothing acknowledged is lost, nothing oversold, no 500."""
    async with gateway_on(ha, settings, tmp_path, ha.urls.mongo_url) as (base, on_ha, log):
        await create(http, base, name, STOCK)
        did: list[Any] = []

        async def fail_over(sale: Sale) -> None:
            did.append(await asyncio.to_thread(failover.do, ha))

        answers, window = await sale_through(
            http, base, name, fail_over, lambda: failover.done(ha, did[0])
        )
        pg = await asyncpg.create_pool(ha.urls.database_url, min_size=1, max_size=2)
        try:
            async with claims_database(ha.urls.mongo_url, on_ha) as claims:
                await judged(
                    http, base, on_ha, log, pg, claims, name, failover.name, answers, window
                )
        finally:
            await pg.close()
