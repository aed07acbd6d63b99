"""MongoClaims against a real MongoDB wire server: one claim per user and coupon, by saga."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from sagas.errors import AlreadyClaimed, SagaConflict
from services.claims import CLAIMS_COLLECTION, MongoClaims

# Whole milliseconds: what BSON stores is exactly what the test compares against.
NOON = datetime(2030, 1, 1, 12, 0, 0, 123000, tzinfo=UTC)


@pytest.fixture
def claims(components) -> MongoClaims:
    return components.claims


def new_saga_id() -> str:
    return str(uuid.uuid4())


async def stored(mongo: AsyncDatabase[dict[str, Any]], coupon: str) -> list[dict[str, Any]]:
    cursor = mongo[CLAIMS_COLLECTION].find({"coupon_name": coupon}, {"_id": 0})
    return [document async for document in cursor]


async def test_record_returns_claimed_at_and_stores_the_claim(claims, mongo, name):
    saga_id = new_saga_id()

    claimed_at = await claims.record(saga_id, "alice", name, NOON)

    assert claimed_at == NOON
    assert await stored(mongo, name) == [
        {"user_id": "alice", "coupon_name": name, "saga_id": saga_id, "claimed_at": NOON}
    ]


async def test_record_replayed_with_same_saga_id_returns_the_original_claimed_at(
    claims, mongo, name
):
    saga_id = new_saga_id()
    await claims.record(saga_id, "alice", name, NOON)

    replayed = await claims.record(saga_id, "alice", name, NOON + timedelta(hours=1))

    assert replayed == NOON
    assert replayed.tzinfo is not None
    assert [doc["claimed_at"] for doc in await stored(mongo, name)] == [NOON]


async def test_claimed_at_comes_back_at_the_precision_it_is_stored(claims, mongo, name):
    saga_id = new_saga_id()
    precise = NOON + timedelta(microseconds=456)

    first = await claims.record(saga_id, "alice", name, precise)
    replayed = await claims.record(saga_id, "alice", name, precise)

    assert first == replayed == NOON
    assert [doc["claimed_at"] for doc in await stored(mongo, name)] == [NOON]


async def test_second_saga_of_same_user_is_already_claimed(claims, mongo, name):
    first = new_saga_id()
    await claims.record(first, "alice", name, NOON)

    with pytest.raises(AlreadyClaimed):
        await claims.record(new_saga_id(), "alice", name, NOON)

    assert [doc["saga_id"] for doc in await stored(mongo, name)] == [first]


async def test_same_user_may_claim_different_coupons(claims, name):
    await claims.record(new_saga_id(), "alice", name, NOON)
    await claims.record(new_saga_id(), "alice", f"{name}_other", NOON)

    assert list((await claims.claimants(name)).values()) == ["alice"]
    assert list((await claims.claimants(f"{name}_other")).values()) == ["alice"]


async def test_erase_returns_true_then_false(claims, mongo, name):
    saga_id = new_saga_id()
    await claims.record(saga_id, "alice", name, NOON)

    assert await claims.erase(saga_id) is True
    assert await claims.erase(saga_id) is False
    assert await stored(mongo, name) == []


async def test_user_can_be_recorded_again_after_erase(claims, mongo, name):
    first, second = new_saga_id(), new_saga_id()
    await claims.record(first, "alice", name, NOON)
    await claims.erase(first)

    await claims.record(second, "alice", name, NOON)

    assert [doc["saga_id"] for doc in await stored(mongo, name)] == [second]


async def test_claimants_lists_sagas_and_users_oldest_claim_first(claims, name):
    sagas = {}
    for user, minutes in [("carol", 3), ("alice", 1), ("dave", 4), ("bob", 2)]:
        sagas[user] = new_saga_id()
        await claims.record(sagas[user], user, name, NOON + timedelta(minutes=minutes))

    claimants = await claims.claimants(name)

    assert list(claimants.values()) == ["alice", "bob", "carol", "dave"]
    assert claimants == {saga_id: user for user, saga_id in sagas.items()}


async def test_claimants_of_unclaimed_coupon_is_empty(claims, name):
    assert await claims.claimants(name) == {}


async def test_ensure_indexes_is_idempotent_and_makes_the_unique_indexes(claims, mongo):
    await claims.ensure_indexes()
    await claims.ensure_indexes()

    indexes = await mongo[CLAIMS_COLLECTION].index_information()
    one_per_user = indexes["one_claim_per_user"]
    assert one_per_user["key"] == [("user_id", 1), ("coupon_name", 1)]
    assert one_per_user.get("unique") is True
    assert indexes["saga_id"]["key"] == [("saga_id", 1)]
    assert indexes["saga_id"].get("unique") is True


async def test_concurrent_records_by_one_user_let_exactly_one_through(claims, mongo, name):
    saga_ids = [new_saga_id() for _ in range(20)]

    results = await asyncio.gather(
        *(claims.record(saga_id, "dipper", name, NOON) for saga_id in saga_ids),
        return_exceptions=True,
    )

    winners = [saga_id for saga_id, result in zip(saga_ids, results, strict=True) if result == NOON]
    assert len(winners) == 1
    assert all(isinstance(result, AlreadyClaimed) for result in results if result != NOON)
    assert [doc["saga_id"] for doc in await stored(mongo, name)] == winners


async def test_erase_before_record_leaves_a_tombstone_a_late_record_respects(claims, mongo, name):
    """A record that lands after its saga's compensation (a timed-out insert the server
    still ran) must take nothing, as a late reserve after a release takes no unit."""
    saga_id = new_saga_id()

    assert await claims.erase(saga_id) is False
    with pytest.raises(SagaConflict):
        await claims.record(saga_id, "alice", name, NOON)

    assert await stored(mongo, name) == []
    assert await claims.claimants(name) == {}
    assert await claims.exists(saga_id) is False


async def test_a_replayed_record_after_its_erase_takes_nothing(claims, mongo, name):
    saga_id = new_saga_id()
    await claims.record(saga_id, "alice", name, NOON)
    assert await claims.erase(saga_id) is True

    with pytest.raises(SagaConflict):
        await claims.record(saga_id, "alice", name, NOON)

    assert await stored(mongo, name) == []
    assert await claims.exists(saga_id) is False
    assert await claims.erase(saga_id) is False


async def test_tombstones_of_many_sagas_do_not_collide(claims, mongo, name):
    saga_ids = [new_saga_id() for _ in range(3)]
    for saga_id in saga_ids:
        assert await claims.erase(saga_id) is False

    await claims.record(new_saga_id(), "alice", name, NOON)

    assert list((await claims.claimants(name)).values()) == ["alice"]


async def test_erase_racing_the_record_of_its_saga_always_wins(claims, mongo, name):
    saga_ids = [new_saga_id() for _ in range(40)]

    async def race(saga_id: str, user: str) -> list[object]:
        return await asyncio.gather(
            claims.record(saga_id, user, name, NOON), claims.erase(saga_id), return_exceptions=True
        )

    outcomes = await asyncio.gather(*(race(s, f"user_{n}") for n, s in enumerate(saga_ids)))

    for recorded, erased in outcomes:
        assert recorded == NOON or isinstance(recorded, SagaConflict), recorded
        assert isinstance(erased, bool), erased
    assert await stored(mongo, name) == []
