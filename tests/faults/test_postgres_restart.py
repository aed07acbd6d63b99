"""PostgreSQL restarted in the middle of a sale (`pg_ctl stop -m fast`, then started again on
the same port), three times, each under a burst of claims.

A fast shutdown ends every session at once, so connections die under statements in
flight, in every state asyncpg can be in. Whatever state that is, the client hears 200,
409 or 503, never a 500; every 200 is a real claim; and once recovery settles, no unit is
lost. The PostgreSQL is the test's own: nothing else in the session is restarted.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import pytest

from devstack.servers import Server, restart_postgres
from tests.faults.test_store_outage import STOCK, Burst, assert_answers_tell_the_truth
from tests.support.apart import saga_log_apart
from tests.support.api import create, metric
from tests.support.cli import coupon_saga
from tests.support.invariants import assert_invariants
from tests.support.servers import gateway_process
from tests.support.settings import changed
from tests.support.waiting import FAST_RECOVERY, all_ended, eventually, held_at_least

RESTARTS = 3
RESTART = {
    **FAST_RECOVERY,
    # Retries span a restart (a second or two here, more on a busy machine), so a saga past
    # the pivot finishes rather than being parked for an operator; parking is not what this
    # tests. The lease outlasts them.
    "saga_retry_seconds": 5.0,
    "store_timeout_seconds": 2.5,  # the retries span two
    "saga_lease_seconds": 8.0,
    "saga_max_recoveries": 50,
}


class SaleAcrossTheRestart(Burst):
    """The burst, with no more than two thirds of the stock's worth of claims sent before
    the restart is done: the sale goes on after it."""

    def __init__(self, http: aiohttp.ClientSession, base: str, coupon: str) -> None:
        super().__init__(http, base, coupon, before_restart=STOCK * 2 // 3)


@pytest.fixture
async def own_pg(own_postgres: Server) -> AsyncIterator[asyncpg.Pool]:
    """A pool for looking at that PostgreSQL; it reconnects after each restart."""
    pool = await asyncpg.create_pool(f"{own_postgres.url}/coupons", min_size=1, max_size=2)
    yield pool
    await pool.close()


async def test_postgresql_restarted_mid_sale_gives_no_500(
    http, settings, mongo, own_postgres, own_pg, tmp_path, name
):
    coupons = [f"{name}_{n}" for n in range(RESTARTS)]
    async with saga_log_apart(settings) as apart:
        gateway_settings = changed(
            apart.settings, {**RESTART, "database_url": f"{own_postgres.url}/coupons"}
        )
        with gateway_process(gateway_settings, tmp_path / "gateway.log") as base:
            answers = []
            for coupon in coupons:
                await create(http, base, coupon, STOCK)
                burst = SaleAcrossTheRestart(http, base, coupon)
                answering = asyncio.ensure_future(burst.run())
                await eventually(lambda coupon=coupon: held_at_least(own_pg, coupon, STOCK // 3))
                await asyncio.to_thread(restart_postgres, own_postgres)
                burst.restarted.set()
                await answering
                answers.append(burst.answers)

            # The restarts landed on sagas in flight: their steps failed and were tried again.
            retries = [
                await metric(http, base, "saga_step_retries_total", step=step)
                for step in ("reserve", "confirm")
            ]
            assert sum(retries) > 0
            statuses = Counter(a.status for burst_answers in answers for a in burst_answers)
            print(f"answers over {RESTARTS} restarts: {dict(statuses)}")
            assert set(statuses) <= {200, 409, 503}  # above all, no 500
            for coupon, burst_answers in zip(coupons, answers, strict=True):
                await eventually(lambda coupon=coupon: all_ended(own_pg, apart.saga_log, coupon))
                facts = await assert_invariants(own_pg, mongo, coupon)
                sagas = {s.saga_id: s for s in await apart.saga_log.find(None, 10_000)}
                print(
                    f"{coupon}: {dict(Counter(a.error or 'claimed' for a in burst_answers))}; "
                    f"{len(facts.claims)} claims, {facts.remaining_amount} units left"
                )
                assert_answers_tell_the_truth(burst_answers, facts, sagas)
                assert any(a.status == 200 and a.after_restart for a in burst_answers)
            assert all(s.status.finished for s in sagas.values())

        for coupon in coupons:
            code, out, _ = await coupon_saga(gateway_settings, "audit", "--coupon", coupon)
            assert code == 0, out
