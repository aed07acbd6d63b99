"""The audit against real stores: each kind of drift is made by hand, found, and repaired.

Drift is made the way a crash or a Redis data loss leaves it: a hold and a claim document
written through the adapters with no saga record, then aged past the settle time.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime

import pytest

from sagas.audit import Auditor, Drift
from sagas.records import SagaRecord, SagaStatus
from tests.support.invariants import assert_conserved, assert_invariants
from tests.support.waiting import eventually, held_at_least, none_held, wait_until_blocked_by

SETTLE_AFTER = 60.0


@pytest.fixture
def auditor(components) -> Auditor:
    return Auditor(
        components.inventory,
        components.claims,
        components.saga_log,
        settle_after_seconds=SETTLE_AFTER,
    )


@pytest.fixture
async def coupon(name, components) -> str:
    await components.inventory.create_coupon(name, 5)
    return name


async def abandoned_hold(components, pg, coupon: str, user: str, *, claimed: bool) -> str:
    """A unit held by a saga whose record is gone, unchanged for an hour."""
    saga_id = str(uuid.uuid4())
    await components.inventory.reserve(saga_id, coupon, user)
    if claimed:
        await components.claims.record(saga_id, user, coupon, datetime.now(UTC))
    await age(pg, saga_id)
    return saga_id


async def age(pg, saga_id: str) -> None:
    await pg.execute(
        "UPDATE holds SET updated_at = now() - interval '1 hour' WHERE saga_id = $1::uuid",
        saga_id,
    )


async def claimed(service, pg, user: str, coupon: str) -> None:
    """A claim whose saga has ended: the confirm after its answer is done too."""
    await service.claim(user, coupon)
    await eventually(lambda: none_held(pg, coupon))


def drifts(report) -> list[tuple[Drift, str]]:
    return sorted((f.drift, f.user_id) for f in report.findings)


async def test_a_clean_coupon_has_no_drift(auditor, service, pg, mongo, coupon):
    await claimed(service, pg, "alice", coupon)
    await claimed(service, pg, "bob", coupon)

    report = await auditor.audit(coupon)

    assert (report.coupons, report.holds, report.claims) == (1, 2, 2)
    assert report.findings == []
    await assert_invariants(pg, mongo, coupon)


async def test_repair_settles_abandoned_holds_from_the_facts(
    auditor, components, pg, mongo, coupon
):
    confirmed = await abandoned_hold(components, pg, coupon, "claimed", claimed=True)
    released = await abandoned_hold(components, pg, coupon, "unclaimed", claimed=False)

    found = await auditor.audit(coupon)
    assert drifts(found) == [
        (Drift.UNSETTLED_HOLD, "claimed"),
        (Drift.UNSETTLED_HOLD, "unclaimed"),
    ]
    assert found.outstanding == found.findings  # without --repair nothing changes

    repaired = await auditor.audit(coupon, repair=True)
    assert {f.saga_id: f.repaired for f in repaired.findings} == {
        confirmed: "confirmed the hold",
        released: "released the hold; the unit is back in stock",
    }
    assert (await auditor.audit(coupon)).findings == []
    facts = await assert_invariants(pg, mongo, coupon)
    assert facts.claims == {confirmed: "claimed"}
    assert facts.remaining_amount == 4


async def test_repair_deletes_a_claim_whose_unit_was_given_back(
    auditor, pg, mongo, coupon, components
):
    """What a driver paused past its lease leaves: its claim lands after the compensation."""
    saga_id = str(uuid.uuid4())
    await components.inventory.release(saga_id, coupon, "zombie")  # compensated first
    await components.claims.record(saga_id, "zombie", coupon, datetime.now(UTC))  # then lands

    repaired = await auditor.audit(coupon, repair=True)

    assert drifts(repaired) == [(Drift.ORPHAN_CLAIM, "zombie")]
    assert repaired.findings[0].repaired == "deleted the claim document"
    assert not await components.claims.exists(saga_id)
    await assert_invariants(pg, mongo, coupon)


async def test_repair_recreates_the_claim_of_a_confirmed_unit(auditor, service, pg, mongo, coupon):
    await claimed(service, pg, "alice", coupon)
    await mongo.claims.delete_one({"coupon_name": coupon, "user_id": "alice"})

    repaired = await auditor.audit(coupon, repair=True)

    assert drifts(repaired) == [(Drift.MISSING_CLAIM, "alice")]
    assert repaired.outstanding == []
    assert (await service.details(coupon)).claimed_by == ["alice"]
    await assert_invariants(pg, mongo, coupon)


async def test_repair_recounts_stock_that_disagrees_with_the_holds(
    auditor, service, pg, mongo, coupon
):
    await claimed(service, pg, "alice", coupon)
    await pg.execute("UPDATE coupons SET remaining_amount = 1 WHERE name = $1", coupon)

    repaired = await auditor.audit(coupon, repair=True)

    assert [(f.drift, f.repaired) for f in repaired.findings] == [
        (Drift.STOCK_MISMATCH, "remaining_amount 1 -> 4")
    ]
    await assert_invariants(pg, mongo, coupon)


async def test_a_recount_queued_behind_a_reserve_counts_that_reserves_hold(
    auditor, service, pg, coupon, components
):
    """The reserve commits while the recount waits for the row lock: its unit is taken and
    its hold is live, so the recount must see both, not a hold count from before the wait."""
    await claimed(service, pg, "alice", coupon)
    await claimed(service, pg, "bob", coupon)
    await pg.execute("UPDATE coupons SET remaining_amount = 2 WHERE name = $1", coupon)  # 3 right

    async with pg.acquire() as blocker, blocker.transaction():
        await blocker.execute("SELECT 1 FROM coupons WHERE name = $1 FOR UPDATE", coupon)
        blocker_pid = await blocker.fetchval("SELECT pg_backend_pid()")
        reserve = asyncio.ensure_future(
            components.inventory.reserve(str(uuid.uuid4()), coupon, "carol")
        )
        await wait_until_blocked_by(pg, blocker_pid, reserve)
        repair = asyncio.ensure_future(auditor.audit(coupon, repair=True))
        await wait_until_blocked_by(pg, blocker_pid, repair, queued=2)
    await reserve
    repaired = await repair

    assert [(f.drift, f.repaired) for f in repaired.findings] == [
        (Drift.STOCK_MISMATCH, "remaining_amount 1 -> 2")  # 3 live holds of 5
    ]
    await assert_conserved(pg, coupon)


async def test_repairs_racing_a_live_sale_keep_stock_conserved(
    auditor, service, pg, mongo, name, components
):
    """Drift the stock, repair it, check conservation: 20 times while 40 claimants run."""
    await components.inventory.create_coupon(name, 100_000)
    users = iter(range(1_000_000))
    done = asyncio.Event()

    async def claimant() -> None:
        while not done.is_set():
            await service.claim(f"user_{next(users)}", name)

    sale = asyncio.gather(*(claimant() for _ in range(40)))
    try:
        for _ in range(20):
            since = await pg.fetchval("SELECT count(*) FROM holds WHERE coupon_name = $1", name)
            await eventually(lambda since=since: held_at_least(pg, name, since + 10))
            await pg.execute(
                "UPDATE coupons SET remaining_amount = remaining_amount - 1 WHERE name = $1", name
            )
            report = await auditor.audit(name, repair=True)
            assert Drift.STOCK_MISMATCH in {f.drift for f in report.findings if f.repaired}
            await assert_conserved(pg, name)
    finally:
        done.set()
        await sale
    await assert_invariants(pg, mongo, name)


async def test_more_claims_than_units_is_reported_not_repaired(auditor, mongo, name, components):
    await components.inventory.create_coupon(name, 1)
    for user in ("a", "b"):
        await components.claims.record(str(uuid.uuid4()), user, name, datetime.now(UTC))

    report = await auditor.audit(name)

    assert Drift.OVERSOLD in {f.drift for f in report.findings}


async def test_a_saga_in_flight_or_a_fresh_hold_is_left_to_its_driver(
    auditor, pg, coupon, components
):
    saga_id = str(uuid.uuid4())
    now = time.time()
    running = SagaRecord(
        saga_id, "claim", {"user_id": "busy", "coupon_name": coupon}, SagaStatus.RUNNING,
        "record", now, now,
    )  # fmt: skip
    await components.saga_log.create(running, [])
    await components.inventory.reserve(saga_id, coupon, "busy")
    await age(pg, saga_id)
    fresh = str(uuid.uuid4())
    await components.inventory.reserve(fresh, coupon, "fresh")  # no record, but held just now

    report = await auditor.audit(coupon, repair=True)

    assert report.findings == []
    assert report.in_flight == 2
    assert (await components.inventory.hold(saga_id)).status == "held"
    assert (await components.inventory.hold(fresh)).status == "held"


async def test_a_failed_saga_is_reported_for_an_operator(auditor, coupon, components):
    saga_id = str(uuid.uuid4())
    now = time.time()
    parked = SagaRecord(
        saga_id, "claim", {"user_id": "stuck", "coupon_name": coupon}, SagaStatus.FAILED,
        "confirm", now, now, error="StoreUnavailable: postgresql is unavailable",
    )  # fmt: skip
    await components.saga_log.create(parked, [])

    report = await auditor.audit(coupon, repair=True)

    assert [(f.drift, f.saga_id, f.repaired) for f in report.findings] == [
        (Drift.FAILED_SAGA, saga_id, "")
    ]


async def test_background_settlement_takes_only_stale_holds_without_a_record(
    auditor, pg, mongo, coupon, components
):
    abandoned = await abandoned_hold(components, pg, coupon, "abandoned", claimed=True)
    fresh = str(uuid.uuid4())
    await components.inventory.reserve(fresh, coupon, "fresh")

    settled = await auditor.settle_stale_holds(limit=10_000)

    assert (abandoned, "confirmed the hold") in {(f.saga_id, f.repaired) for f in settled}
    assert fresh not in {f.saga_id for f in settled}
    assert (await components.inventory.hold(abandoned)).status == "confirmed"
    assert (await components.inventory.hold(fresh)).status == "held"


async def test_two_processes_settling_at_once_give_a_unit_back_once(
    auditor, pg, coupon, components
):
    """Every gateway process settles stale holds; the release itself decides who did it."""
    abandoned = await abandoned_hold(components, pg, coupon, "abandoned", claimed=False)
    before = (await components.inventory.get_coupon(coupon)).remaining_amount

    first, second = await asyncio.gather(
        auditor.settle_stale_holds(limit=10_000), auditor.settle_stale_holds(limit=10_000)
    )

    outcomes = [f.repaired for f in [*first, *second] if f.saga_id == abandoned]
    assert outcomes.count("released the hold; the unit is back in stock") == 1
    assert set(outcomes) <= {  # never "left for an operator" for what the other one did
        "released the hold; the unit is back in stock",
        "settled meanwhile by another process",
    }
    assert (await components.inventory.get_coupon(coupon)).remaining_amount == before + 1
