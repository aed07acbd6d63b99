"""Redis loses every saga record mid-sale; the holds are settled from PostgreSQL and MongoDB.

A gateway that crashed mid-sale leaves units held, and with the saga records gone no
recoverer knows of them. The facts decide each: a claim document with the saga's id
means the claim stands (confirm), none means it never happened (release). A live
gateway's drivers are refused at their next log write and finish or undo from the facts.

Each test's saga log lives under a key prefix of its own, and "Redis loses its data" is
every key under that prefix deleted at once.
"""

from __future__ import annotations

import asyncio
import json
import random

from sagas.audit import Drift
from tests.support.apart import Apart, forget_saga_log, saga_log_apart
from tests.support.api import claim_all_tolerant, create, details
from tests.support.cli import coupon_saga
from tests.support.faulty_gateway import Fault
from tests.support.invariants import assert_invariants
from tests.support.servers import gateway_process, kill_9
from tests.support.settings import changed
from tests.support.waiting import all_ended, eventually, held_at_least

SETTLE_SECONDS = 3.0  # longer than a lease plus a step's worst case, as in production
FAST = {
    "saga_lease_seconds": 1.0,
    "recovery_interval_seconds": 0.2,
    "step_timeout_seconds": 1.4,
    "store_timeout_seconds": 0.4,  # the drivers end their own calls, within a step's try
    "saga_retry_seconds": 0.8,  # two store timeouts
}


HELD = "SELECT count(*) FROM holds WHERE coupon_name = $1 AND status = 'held'"


async def start_sale(http, base: str, coupon: str) -> asyncio.Future:
    """800 claims by 400 users for 150 units, all at once; returns the pending answers."""
    await create(http, base, coupon, 150)
    attempts = [(f"user_{n}", coupon) for n in range(400)] * 2
    random.Random(11).shuffle(attempts)
    burst = asyncio.ensure_future(claim_all_tolerant(http, base, attempts))
    return burst


async def crash_then_lose_redis(http, apart: Apart, settings, pg, tmp_path, coupon: str):
    """A gateway killed mid-sale with units held, then its saga log lost: holds nobody
    knows of. Returns the answers the clients got."""
    # Each worker freezes at its first claim document, with that saga's unit and those of
    # the sagas beside it still held: the sale cannot end before the kill, however fast.
    freezing = Fault.stall_after("record", 600.0)
    with gateway_process(settings, tmp_path / "crashed.log", fault=freezing) as base:
        burst = await start_sale(http, base, coupon)

        async def units_held() -> bool:
            return bool(await pg.fetchval(HELD, coupon))

        await eventually(units_held)
        kill_9(base)
        answered = await burst
    assert await forget_saga_log(apart.redis, apart.keys)
    return answered


async def test_audit_repair_converges_after_redis_loses_its_data(
    http, settings, pg, mongo, tmp_path, name
):
    async with saga_log_apart(settings) as apart:
        # The gateway itself settles abandoned holds only after an hour: the audit does it.
        answered = await crash_then_lose_redis(
            http, apart, changed(apart.settings, FAST), pg, tmp_path, name
        )
        auditing = changed(apart.settings, {**FAST, "hold_settle_seconds": SETTLE_SECONDS})
        found = {}

        async def every_hold_past_the_settle_time() -> bool:
            code, out, _ = await coupon_saga(auditing, "audit", "--coupon", name, "--json")
            found.update(json.loads(out), code=code)
            return found["in_flight"] == 0  # a hold younger than that is left to its driver

        await eventually(every_hold_past_the_settle_time)
        assert found["code"] == 1, found
        assert {f["drift"] for f in found["findings"]} == {Drift.UNSETTLED_HOLD.value}

        code, out, _ = await coupon_saga(auditing, "audit", "--coupon", name, "--repair", "--json")
        repaired = json.loads(out)
        assert code == 0, out
        assert repaired["repaired"] == found["drift"] and repaired["outstanding"] == 0

        code, out, _ = await coupon_saga(auditing, "audit", "--coupon", name)
        assert code == 0, out
        assert "drift=0" in out

    facts = await assert_invariants(pg, mongo, name)
    winners = {body["user_id"] for status, body in answered if status == 200}
    assert winners <= set(facts.claims.values())  # every 200 a client saw is a real claim
    assert facts.remaining_amount + len(facts.claims) == 150


async def test_a_restarted_gateway_settles_abandoned_holds_by_itself(
    http, settings, pg, mongo, tmp_path, name
):
    """Reconciliation without an operator: every gateway's recovery round does it too."""
    async with saga_log_apart(settings) as apart:
        settling = changed(apart.settings, {**FAST, "hold_settle_seconds": SETTLE_SECONDS})
        answered = await crash_then_lose_redis(http, apart, settling, pg, tmp_path, name)
        assert await pg.fetchval(HELD, name)

        with gateway_process(settling, tmp_path / "restarted.log"):
            await eventually(lambda: all_ended(pg, apart.saga_log, name), tries=2400)

        facts = await assert_invariants(pg, mongo, name)
        winners = {body["user_id"] for status, body in answered if status == 200}
        assert winners <= set(facts.claims.values())
        code, out, _ = await coupon_saga(apart.settings, "audit", "--coupon", name)
        assert code == 0, out


async def test_redis_flushed_under_a_live_gateway_loses_no_unit(
    http, settings, pg, mongo, tmp_path, name
):
    async with saga_log_apart(settings) as apart:
        settling = changed(apart.settings, {**FAST, "hold_settle_seconds": SETTLE_SECONDS})
        with gateway_process(settling, tmp_path / "gateway.log") as base:
            burst = await start_sale(http, base, name)
            await eventually(lambda: held_at_least(pg, name, 60))
            assert await forget_saga_log(apart.redis, apart.keys)
            answered = await burst
            assert {status for status, _ in answered} <= {200, 409, 503}  # it stayed up
            await eventually(lambda: all_ended(pg, apart.saga_log, name), tries=2400)
            coupon = await details(http, base, name)

        facts = await assert_invariants(pg, mongo, name)
        winners = {body["user_id"] for status, body in answered if status == 200}
        assert winners <= set(facts.claims.values())
        assert coupon["remaining_amount"] + len(coupon["claimed_by"]) == 150
        code, out, _ = await coupon_saga(apart.settings, "audit", "--coupon", name)
        assert code == 0, out
