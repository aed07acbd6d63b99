"""The sold-out memo over a real PostgreSQL: what it remembers, for how long, and the
claims that wait their turn behind a sell-out."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from prometheus_client import REGISTRY

from orchestrator.bootstrap import open_components
from orchestrator.claims.soldout import SoldOutMemo
from sagas.errors import AlreadyClaimed, OutOfStock
from sagas.ports import HoldStatus
from services.inventory import PostgresInventory
from tests.support.settings import changed

SECONDS = 1.0
HELD = HoldStatus.HELD


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def inventory(components) -> PostgresInventory:
    return components.inventory


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def memo(inventory, clock) -> SoldOutMemo:
    return SoldOutMemo(inventory, SECONDS, clock)


async def sell_out(
    inventory: PostgresInventory, coupon: str, users: list[str], confirmed: int = 0
) -> dict[str, str]:
    """A coupon with one unit per user, the first `confirmed` confirmed and the rest held
    by their sagas; returns each user's saga id."""
    await inventory.create_coupon(coupon, len(users))
    sagas = {user: str(uuid.uuid4()) for user in users}
    for user, saga_id in sagas.items():
        await inventory.reserve(saga_id, coupon, user)
    for saga_id in list(sagas.values())[:confirmed]:
        await inventory.confirm(saga_id)
    return sagas


async def test_a_sold_out_coupon_is_answered_from_memory_for_its_seconds_only(
    inventory, memo, clock, name
):
    await sell_out(inventory, name, ["ann", "bob"], confirmed=1)
    assert await memo.get(name) is None  # not learned yet

    await memo.learn(name)
    entry = await memo.get(name)
    assert entry is not None and entry.holders == {"ann": HoldStatus.CONFIRMED, "bob": HELD}
    assert isinstance(await entry.answer(inventory, name, "ann"), AlreadyClaimed)
    assert await entry.answer(inventory, name, "bob") is None  # in flight: its saga tells
    assert isinstance(await entry.answer(inventory, name, "cid"), OutOfStock)

    clock.now += SECONDS
    assert await memo.get(name) is None


async def test_a_coupon_with_stock_is_not_remembered(inventory, memo, name):
    await inventory.create_coupon(name, 1)
    await memo.learn(name)
    assert await memo.get(name) is None
    await memo.learn("no such coupon")
    assert await memo.get("no such coupon") is None


async def test_a_unit_given_back_is_seen_by_the_first_claim_past_half_the_time(
    inventory, memo, clock, name
):
    sagas = await sell_out(inventory, name, ["ann", "bob"])
    await memo.learn(name)
    assert await inventory.release(sagas["ann"], name, "ann")

    clock.now += SECONDS / 4
    assert await memo.get(name) is not None  # young enough: no read

    clock.now += SECONDS / 4
    assert await memo.get(name) is None  # read again: there is stock


async def test_an_entry_still_sold_out_is_renewed_with_its_new_holders(
    inventory, memo, clock, name
):
    await sell_out(inventory, name, ["ann"])
    await memo.learn(name)
    clock.now += SECONDS * 0.9

    entry = await memo.get(name)

    assert entry is not None and entry.read_at == clock.now
    clock.now += SECONDS * 0.9
    assert await memo.get(name) is not None


async def test_past_the_holders_it_keeps_it_asks_the_hold_index(inventory, clock, name):
    memo = SoldOutMemo(inventory, SECONDS, clock, max_holders=2)
    await sell_out(inventory, name, ["ann", "bob", "cid"], confirmed=2)

    await memo.learn(name)

    entry = await memo.get(name)
    assert entry is not None and entry.holders is None
    assert isinstance(await entry.answer(inventory, name, "ann"), AlreadyClaimed)
    assert await entry.answer(inventory, name, "cid") is None
    assert isinstance(await entry.answer(inventory, name, "dan"), OutOfStock)


async def test_zero_seconds_turns_it_off(inventory, clock, name):
    memo = SoldOutMemo(inventory, 0.0, clock)
    await sell_out(inventory, name, ["ann"])
    await memo.learn(name)
    assert await memo.get(name) is None


async def test_a_claim_that_waited_its_turn_meets_a_sell_out_without_a_saga(settings, name):
    """One saga slot: the winner's saga, then a loser's that teaches the memo; the claim
    queued behind them is answered from memory when its turn comes."""
    one_slot = changed(settings, {"max_concurrent_sagas": 1})
    async with open_components(one_slot) as components:
        coupons = components.coupons
        await coupons.create(name, 1)
        started = sagas_started()

        outcomes = await asyncio.gather(
            *(coupons.claim(user, name) for user in ("winner", "loser", "queued")),
            return_exceptions=True,
        )

        assert [type(outcome).__name__ for outcome in outcomes] == [
            "Claimed",
            "OutOfStock",
            "OutOfStock",
        ]
        assert sagas_started() - started == 2  # none for the queued claim


def sagas_started() -> float:
    return REGISTRY.get_sample_value("saga_started_total", {"saga": "claim"}) or 0.0
