"""The adapters' batch forms against the real stores: each item of a mixed batch gets the
answer its own call would have had, and a batch never takes a unit a refusal holds."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable
from datetime import UTC, datetime

import pytest

from orchestrator.bootstrap import open_components
from sagas.errors import (
    AlreadyClaimed,
    ClaimInFlight,
    LeaseLost,
    OutOfStock,
    SagaConflict,
)
from sagas.records import SagaRecord, SagaStatus
from services.batched import BatchedClaims, BatchedInventory, BatchedSagaLog
from services.claims import ClaimRequest, MongoClaims
from services.inventory import HoldRequest, PostgresInventory
from services.redis_keys import RedisKeys
from services.saga_log import LogWrite, RedisSagaLog
from tests.support.invariants import assert_conserved
from tests.support.settings import changed
from tests.support.waiting import wait_until_blocked_by

NOON = datetime(2030, 1, 1, 12, 0, 0, 123000, tzinfo=UTC)


def new_saga_id() -> str:
    return str(uuid.uuid4())


def kinds(answers: list) -> list[str]:
    return ["ok" if answer is None else type(answer).__name__ for answer in answers]


async def live_holders(pg, coupon: str) -> list[str]:
    rows = await pg.fetch(
        "SELECT user_id FROM holds WHERE coupon_name = $1 AND status <> 'released' "
        "ORDER BY user_id",
        coupon,
    )
    return [row["user_id"] for row in rows]


async def test_store_batching_chooses_the_adapters(settings):
    async with open_components(changed(settings, {"store_batching": False})) as alone:
        assert type(alone.inventory) is PostgresInventory
        assert type(alone.claims) is MongoClaims
        assert type(alone.saga_log) is RedisSagaLog
    async with open_components(changed(settings, {"store_batching": True})) as shared:
        assert type(shared.inventory) is BatchedInventory
        assert type(shared.claims) is BatchedClaims
        assert type(shared.saga_log) is BatchedSagaLog


# -- reserve_units ---------------------------------------------------------------------


async def test_a_mixed_reserve_batch_answers_each_hold_as_its_own_reserve_would(
    pg, name, components
):
    inventory = components.inventory
    await inventory.create_coupon(name, 3)
    earlier = new_saga_id()
    await inventory.reserve(earlier, name, "early")  # 2 units left
    replayed = new_saga_id()
    batch = [
        HoldRequest(replayed, name, "ann"),  # reserved: 1 left
        HoldRequest(new_saga_id(), name, "ann"),  # duplicate inside the batch
        HoldRequest(new_saga_id(), name, "early"),  # duplicate of an earlier claim
        HoldRequest(earlier, name, "early"),  # a replay of the earlier saga
        HoldRequest(replayed, name, "ann"),  # a replay inside the batch
        HoldRequest(new_saga_id(), f"{name}_NONE", "bob"),  # no such coupon
        HoldRequest(new_saga_id(), name, "cat"),  # reserved: the last unit
        HoldRequest(new_saga_id(), name, "dan"),  # more claims than stock
        HoldRequest(new_saga_id(), name, "cat"),  # sold out and a duplicate: duplicate
    ]

    answers = await inventory.reserve_many(batch)

    assert kinds(answers) == [
        "ok",
        "ClaimInFlight",
        "ClaimInFlight",
        "ok",
        "ok",
        "CouponNotFound",
        "ok",
        "OutOfStock",
        "ClaimInFlight",
    ]
    assert await live_holders(pg, name) == ["ann", "cat", "early"]
    assert (await inventory.get_coupon(name)).remaining_amount == 0
    await assert_conserved(pg, name)


async def test_after_a_hold_refused_for_stock_its_replays_and_duplicates_are_refused_so(
    pg, name, components
):
    """As reserve_unit one after the other: the refused hold is gone, so a replay of its
    saga, or the same user's next saga, finds no hold and no stock either."""
    inventory = components.inventory
    await inventory.create_coupon(name, 1)
    late = new_saga_id()

    answers = await inventory.reserve_many(
        [
            HoldRequest(new_saga_id(), name, "first"),
            HoldRequest(late, name, "late"),
            HoldRequest(late, name, "late"),  # its replay
            HoldRequest(new_saga_id(), name, "late"),  # the same user again
        ]
    )

    assert kinds(answers) == ["ok", "OutOfStock", "OutOfStock", "OutOfStock"]
    assert await live_holders(pg, name) == ["first"]
    await assert_conserved(pg, name)


async def test_a_released_saga_in_a_batch_takes_nothing(pg, name, components):
    inventory = components.inventory
    await inventory.create_coupon(name, 2)
    compensated = new_saga_id()
    await inventory.release(compensated, name, "gone")  # its tombstone, before any reserve

    answers = await inventory.reserve_many(
        [HoldRequest(compensated, name, "gone"), HoldRequest(new_saga_id(), name, "here")]
    )

    assert kinds(answers) == ["SagaConflict", "ok"]
    assert await live_holders(pg, name) == ["here"]
    await assert_conserved(pg, name)


async def queued_behind_a_batch(pg, coupon: str, batch: Awaitable, then: Awaitable) -> tuple:
    """Run `batch`, then `then`, both queued (in that order) for the coupon's row while
    another transaction holds it; return what each gave. A call that held a hold while it
    waited for the row would meet the batch in a deadlock, and PostgreSQL's deadlock check
    (a second) would end one of them with an error."""
    async with pg.acquire() as blocker, blocker.transaction():
        await blocker.execute("SELECT 1 FROM coupons WHERE name = $1 FOR UPDATE", coupon)
        blocker_pid = await blocker.fetchval("SELECT pg_backend_pid()")
        first = asyncio.ensure_future(batch)
        await wait_until_blocked_by(pg, blocker_pid, first)
        second = asyncio.ensure_future(then)
        await wait_until_blocked_by(pg, blocker_pid, second, queued=2)
    return await first, await second


async def test_a_release_queued_behind_a_batch_on_the_coupon_never_deadlocks_with_it(
    pg, name, components
):
    """alice's earlier saga gives its unit back while a batch with her next claim waits."""
    inventory = components.inventory
    await inventory.create_coupon(name, 2)
    earlier, later = new_saga_id(), new_saga_id()
    await inventory.reserve(earlier, name, "alice")

    batch, released = await queued_behind_a_batch(
        pg,
        name,
        inventory.reserve_many([HoldRequest(later, name, "alice")]),
        inventory.release(earlier, name, "alice"),
    )

    # In the order they queued: alice still held a unit when the batch ran.
    assert (kinds(batch), released) == (["ClaimInFlight"], True)
    assert await live_holders(pg, name) == []
    await assert_conserved(pg, name)


async def test_a_reserve_without_batching_queued_behind_a_batch_never_deadlocks_with_it(
    pg, name, components
):
    """bob claims through a batch and, at once, through a gateway without batching."""
    inventory = components.inventory
    await inventory.create_coupon(name, 2)

    batch, alone = await queued_behind_a_batch(
        pg,
        name,
        inventory.reserve_many([HoldRequest(new_saga_id(), name, "bob")]),
        pg.fetchval("SELECT reserve_unit($1::uuid, $2, 'bob')", new_saga_id(), name),
    )

    # bob's unit is held by the batch's saga, not confirmed: the saga in flight is named.
    assert kinds(batch) == ["ok"] and alone.startswith("in_flight:")
    assert await live_holders(pg, name) == ["bob"]
    await assert_conserved(pg, name)


async def test_batches_over_several_coupons_take_units_in_arrival_order(pg, name, components):
    inventory = components.inventory
    other = f"{name}_B"
    await inventory.create_coupon(name, 1)
    await inventory.create_coupon(other, 2)

    answers = await inventory.reserve_many(
        [
            HoldRequest(new_saga_id(), other, "u1"),
            HoldRequest(new_saga_id(), name, "u2"),
            HoldRequest(new_saga_id(), name, "u3"),
            HoldRequest(new_saga_id(), other, "u4"),
            HoldRequest(new_saga_id(), other, "u5"),
        ]
    )

    assert kinds(answers) == ["ok", "ok", "OutOfStock", "ok", "OutOfStock"]
    assert await live_holders(pg, name) == ["u2"]
    assert await live_holders(pg, other) == ["u1", "u4"]
    await assert_conserved(pg, name)
    await assert_conserved(pg, other)


async def test_concurrent_reserves_share_batches_and_never_oversell(pg, name):
    """Through the batching adapter: 60 claims, 20 users each trying 3 times, 10 units."""
    sizes: list[int] = []
    inventory = BatchedInventory(pg, observe=lambda batch, size: sizes.append(size))
    await inventory.create_coupon(name, 10)

    results = await asyncio.gather(
        *(inventory.reserve(new_saga_id(), name, f"user{n % 20}") for n in range(60)),
        return_exceptions=True,
    )

    reserved = [result for result in results if result is None]
    refused = {type(result) for result in results if result is not None}
    assert len(reserved) == 10
    assert refused <= {ClaimInFlight, OutOfStock}  # no hold is confirmed here
    assert len(set(await live_holders(pg, name))) == 10
    assert (await inventory.get_coupon(name)).remaining_amount == 0
    await assert_conserved(pg, name)
    assert sum(sizes) == 60 and max(sizes) > 1  # they did share


# -- confirm ---------------------------------------------------------------------------


async def test_a_confirm_batch_answers_each_saga_as_confirm_would(pg, name, components):
    inventory = components.inventory
    await inventory.create_coupon(name, 3)
    held, confirmed, released = new_saga_id(), new_saga_id(), new_saga_id()
    await inventory.reserve(held, name, "held")
    await inventory.reserve(confirmed, name, "confirmed")
    await inventory.confirm(confirmed)
    await inventory.reserve(released, name, "released")
    await inventory.release(released, name, "released")

    answers = await inventory.confirm_many([held, confirmed, released, new_saga_id(), held.upper()])

    assert kinds(answers) == ["ok", "ok", "SagaConflict", "SagaConflict", "ok"]
    assert (await inventory.hold(held)).status == "confirmed"
    assert (await inventory.hold(released)).status == "released"


# -- record ----------------------------------------------------------------------------


async def test_a_mixed_record_batch_answers_each_claim_as_its_own_record_would(name, components):
    claims = components.claims
    earlier, replayed, erased = new_saga_id(), new_saga_id(), new_saga_id()
    await claims.record(earlier, "early", name, NOON)
    await claims.erase(erased)  # a tombstone: this saga was compensated

    answers = await claims.record_many(
        [
            ClaimRequest(replayed, "ann", name, NOON),
            ClaimRequest(new_saga_id(), "ann", name, NOON),  # duplicate inside the batch
            ClaimRequest(new_saga_id(), "early", name, NOON),  # duplicate of an earlier one
            ClaimRequest(earlier, "early", name, datetime.now(UTC)),  # replay: stored time
            ClaimRequest(replayed, "ann", name, datetime.now(UTC)),  # replay inside the batch
            ClaimRequest(erased, "zed", name, NOON),  # refused by its tombstone
            ClaimRequest(new_saga_id(), "bob", name, NOON),
        ]
    )

    assert [a if isinstance(a, datetime) else type(a) for a in answers] == [
        NOON,
        AlreadyClaimed,
        AlreadyClaimed,
        NOON,
        NOON,
        SagaConflict,
        NOON,
    ]
    assert set((await claims.claimants(name)).values()) == {"early", "ann", "bob"}


# -- saga log --------------------------------------------------------------------------


@pytest.fixture
def sizes() -> list[int]:
    return []


@pytest.fixture
def saga_log(redis, settings, keys, sizes) -> BatchedSagaLog:
    return BatchedSagaLog(
        redis,
        observe=lambda batch, size: sizes.append(size),
        keys=keys,
        lease_seconds=settings.saga_lease_seconds,
        retention_seconds=settings.saga_retention_seconds,
    )


async def take_over(redis, keys: RedisKeys, saga_id: str) -> None:
    """Another driver's takeover, as far as the fence sees it: the epoch moves on."""
    await redis.hincrby(keys.saga(saga_id), "epoch", 1)


def running(saga_id: str, epoch: int = 1) -> SagaRecord:
    now = time.time()
    return SagaRecord(
        saga_id=saga_id,
        name="claim",
        payload={"user_id": "ann", "coupon_name": "PROMO"},
        status=SagaStatus.RUNNING,
        step="reserve",
        created_at=now,
        updated_at=now,
        epoch=epoch,
    )


async def test_a_log_batch_fences_each_write_by_its_own_epoch(saga_log, redis, keys):
    mine, taken_over, existing = running(new_saga_id()), running(new_saga_id()), new_saga_id()
    await saga_log.create(mine, [])
    await saga_log.create(taken_over, [])
    await saga_log.create(running(existing), [])
    fresh = running(new_saga_id())
    done = mine.moved(mine.updated_at + 1, status=SagaStatus.COMPLETED)
    stale = taken_over.moved(taken_over.updated_at + 1, step="record")
    await take_over(redis, keys, taken_over.saga_id)

    answers = await saga_log.apply_many(
        [
            LogWrite("create", fresh, (), "in_flight", 60, lost="exists"),
            LogWrite("save", done, (), "finished", 60),
            LogWrite("save", stale, (), "in_flight", 60),  # fenced out
            LogWrite("create", running(existing), (), "in_flight", 60, lost="exists"),
        ]
    )

    assert kinds(answers) == ["ok", "ok", "LeaseLost", "LeaseLost"]
    assert (await saga_log.load(fresh.saga_id)).status is SagaStatus.RUNNING
    assert (await saga_log.load(mine.saga_id)).status is SagaStatus.COMPLETED
    assert (await saga_log.load(taken_over.saga_id)).step == "reserve"


async def test_concurrent_log_writes_share_a_pipeline_and_one_lost_lease_fails_only_its_own(
    saga_log, redis, keys, sizes
):
    records = [running(new_saga_id()) for _ in range(12)]
    await asyncio.gather(*(saga_log.create(record, []) for record in records))
    fenced = records[5]
    await take_over(redis, keys, fenced.saga_id)

    results = await asyncio.gather(
        *(
            saga_log.save(record.moved(record.updated_at + 1, step="record"), [])
            for record in records
        ),
        return_exceptions=True,
    )

    assert [type(result) for result in results] == [type(None)] * 5 + [LeaseLost] + [type(None)] * 6
    assert max(sizes) > 1
