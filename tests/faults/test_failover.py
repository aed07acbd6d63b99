"""A store fails over in the middle of a flash sale, and the gateway follows its primary
without a restart: PostgreSQL's standby promoted (DATABASE_URL naming both hosts), Redis's
replica promoted by Sentinel (a switchover, then a killed master).

Every claim is answered 200, 409 or 503, never a 500; every 200 is a real claim; claims
go on being sold after the failover; and once the sagas have settled (from their facts,
where the failover lost a saga-log write) the invariants hold and the audit is clean.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from orchestrator.settings import Settings
from tests.faults.test_postgres_restart import RESTART, SaleAcrossTheRestart
from tests.faults.test_store_outage import STOCK, Answer, assert_answers_tell_the_truth
from tests.support.apart import saga_log_apart
from tests.support.api import create
from tests.support.cli import coupon_saga
from tests.support.invariants import CouponFacts, assert_invariants
from tests.support.postgres_pair import PostgresPair, postgres_pair
from tests.support.sentinels import SentinelGroup, sentinel_group
from tests.support.servers import gateway_process
from tests.support.settings import changed
from tests.support.waiting import FAST_RECOVERY, all_ended, eventually, held_at_least


@pytest.fixture
def pair() -> Iterator[PostgresPair]:
    with postgres_pair() as started:
        yield started


async def looking_at(url: str) -> asyncpg.Pool:
    """A pool of the test's own, to watch the sale (it finds the primary as the gateway does)."""
    return await asyncpg.create_pool(url, min_size=1, max_size=2)


async def ready(http, base: str) -> bool:
    """The gateway says every store answers (a worker whose claims saga failed for a
    store away refuses claims until its probe says so too): the held-back claims may go."""
    async with http.get(f"{base}/ready") as response:
        return response.status == 200


def assert_no_500_and_sold_after(answers: list[Answer]) -> None:
    statuses = Counter(answer.status for answer in answers)
    for after in (False, True):
        told = Counter(a.error or "claimed" for a in answers if a.after_restart is after)
        print(f"answers {'after' if after else 'before'} the failover: {dict(told)}")
    assert set(statuses) <= {200, 409, 503}  # above all, no 500
    assert any(a.status == 200 and a.after_restart for a in answers)


async def test_postgresql_failover_mid_sale(http, settings, mongo, pair, tmp_path, name):
    """The primary stopped with a third of the stock held, the standby promoted: the
    gateway's pools make their connections again to the new primary."""
    async with saga_log_apart(settings) as apart:
        gateway_settings = changed(apart.settings, {**RESTART, "database_url": pair.url()})
        pg = await looking_at(pair.url())
        try:
            with gateway_process(gateway_settings, tmp_path / "gateway.log") as base:
                await create(http, base, name, STOCK)
                burst = SaleAcrossTheRestart(http, base, name)
                answering = asyncio.ensure_future(burst.run())
                await eventually(lambda: held_at_least(pg, name, STOCK // 3))
                await pair.primary.stop()
                await pair.promote_standby()
                await eventually(lambda: ready(http, base))
                burst.restarted.set()
                await answering

                await eventually(lambda: all_ended(pg, apart.saga_log, name))
                facts = await assert_invariants(pg, mongo, name)
                sagas = {s.saga_id: s for s in await apart.saga_log.find(None, 10_000)}
                assert_no_500_and_sold_after(burst.answers)
                assert_answers_tell_the_truth(burst.answers, facts, sagas)
        finally:
            await pg.close()

    code, out, _ = await coupon_saga(gateway_settings, "audit", "--coupon", name)
    assert code == 0, out


@pytest.fixture
async def group() -> AsyncIterator[SentinelGroup]:
    async with sentinel_group() as started:
        yield started


def on_sentinels(settings: Settings, group: SentinelGroup, database_url: str) -> Settings:
    return changed(
        settings,
        {
            **FAST_RECOVERY,
            "saga_retry_seconds": 5.0,  # spans a failover (a second or two, more when busy)
            "store_timeout_seconds": 2.0,
            "saga_lease_seconds": 8.0,
            "saga_max_recoveries": 50,
            "hold_settle_seconds": 15.0,  # units whose saga record the failover lost
            "database_url": database_url,
            "redis_url": group.redis_url,
            "redis_sentinels": group.addresses,
            "redis_sentinel_master": group.name,
            # Durable writes on: each log write waits for the replica (none, for a while,
            # after a failover: each such wait runs its 100 ms course).
            "redis_wait_replicas": 1,
        },
    )


def assert_200s_are_claims(answers: list[Answer], facts: CouponFacts) -> None:
    """A saga whose log record the failover lost has none to compare with: the facts are
    the truth, and every client told 200 holds a claim."""
    for answer in answers:
        if answer.status == 200:
            assert facts.claims.get(answer.saga_id) == answer.user_id, answer


@pytest.mark.parametrize("failover", ["switchover", "master killed"])
async def test_redis_failover_mid_sale(
    http, settings, mongo, own_postgres, group, tmp_path, name, failover
):
    gateway_settings = on_sentinels(settings, group, f"{own_postgres.url}/coupons")
    pg = await looking_at(gateway_settings.database_url)
    try:
        with gateway_process(gateway_settings, tmp_path / "gateway.log") as base:
            await create(http, base, name, STOCK)
            burst = SaleAcrossTheRestart(http, base, name)
            answering = asyncio.ensure_future(burst.run())
            await eventually(lambda: held_at_least(pg, name, STOCK // 3))
            if failover == "switchover":
                await group.failover()
            else:
                await group.kill_master()
            await eventually(lambda: ready(http, base))
            burst.restarted.set()
            await answering

            facts = await assert_invariants(pg, mongo, name)
            assert_no_500_and_sold_after(burst.answers)
            assert_200s_are_claims(burst.answers, facts)
    finally:
        await pg.close()

    code, out, _ = await coupon_saga(gateway_settings, "audit", "--coupon", name)
    assert code == 0, out
