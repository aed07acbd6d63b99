"""Repeat claims of one (user, coupon) in one process, over the real stores: one saga for
all of them, every answer the contract's, one hold."""

from __future__ import annotations

import asyncio

from prometheus_client import REGISTRY

from sagas.ports import Claimed


async def test_simultaneous_repeats_share_one_saga_and_one_stands(service, name, components):
    await service.create(name, 5)
    started = sagas_started()

    outcomes = await claim_at_once(service, "ann", name, 20)

    assert kinds(outcomes) == {"Claimed": 1, "AlreadyClaimed": 19}
    assert sagas_started() - started == 1
    snapshot = await components.inventory.snapshot(name)
    assert snapshot is not None and [hold.user_id for hold in snapshot.holds] == ["ann"]
    assert snapshot.stock.remaining_amount == 4


async def test_a_later_repeat_of_a_claim_that_stood_needs_no_saga(service, name):
    await service.create(name, 5)
    assert isinstance(await service.claim("ann", name), Claimed)
    started = sagas_started()

    outcomes = await claim_at_once(service, "ann", name, 5)

    assert kinds(outcomes) == {"AlreadyClaimed": 5}
    assert sagas_started() - started == 0


async def test_repeats_of_a_refused_claim_get_its_refusal(service, name):
    await service.create(name, 1)
    await service.claim("winner", name)
    started = sagas_started()

    sold_out = await claim_at_once(service, "ann", name, 10)
    missing = await claim_at_once(service, "ann", name + "_none", 10)

    assert kinds(sold_out) == {"OutOfStock": 10}
    assert kinds(missing) == {"CouponNotFound": 10}
    assert sagas_started() - started == 2  # one for each burst


async def claim_at_once(service, user: str, coupon: str, times: int) -> list[object]:
    return await asyncio.gather(
        *(service.claim(user, coupon) for _ in range(times)), return_exceptions=True
    )


def kinds(outcomes: list[object]) -> dict[str, int]:
    counted: dict[str, int] = {}
    for outcome in outcomes:
        counted[type(outcome).__name__] = counted.get(type(outcome).__name__, 0) + 1
    return counted


def sagas_started() -> float:
    return REGISTRY.get_sample_value("saga_started_total", {"saga": "claim"}) or 0.0
