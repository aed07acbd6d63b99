"""PostgresInventory against a real PostgreSQL: stock, holds and the one-live-hold lock."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Awaitable

import asyncpg
import pytest

from sagas.errors import AlreadyClaimed, CouponExists, CouponNotFound, OutOfStock, SagaConflict
from sagas.ports import CouponStock
from services.inventory import PostgresInventory, reset_connection
from tests.support.invariants import assert_conserved
from tests.support.waiting import wait_until_blocked_by


@pytest.fixture
def inventory(components) -> PostgresInventory:
    return components.inventory


def new_saga_id() -> str:
    return str(uuid.uuid4())


async def remaining(pg: asyncpg.Pool, coupon: str) -> int:
    return await pg.fetchval("SELECT remaining_amount FROM coupons WHERE name = $1", coupon)


async def hold_status(pg: asyncpg.Pool, saga_id: str) -> str | None:
    return await pg.fetchval("SELECT status FROM holds WHERE saga_id = $1::uuid", saga_id)


async def holds_of(pg: asyncpg.Pool, coupon: str) -> list[tuple[str, str]]:
    """(user_id, status) of every hold on the coupon, released ones included."""
    rows = await pg.fetch("SELECT user_id, status FROM holds WHERE coupon_name = $1", coupon)
    return [(row["user_id"], row["status"]) for row in rows]


async def outcomes(calls: list[Awaitable[None]]) -> Counter[str]:
    """Run the calls at once; count 'reserved' or the name of the error each one raised."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    return Counter(
        type(result).__name__ if isinstance(result, BaseException) else "reserved"
        for result in results
    )


async def test_create_coupon_stores_full_stock(inventory, pg, name):
    created = await inventory.create_coupon(name, 7)

    assert created == CouponStock(name, 7, 7)
    assert await inventory.get_coupon(name) == created
    assert await holds_of(pg, name) == []


async def test_create_coupon_twice_raises_coupon_exists_and_keeps_the_first(inventory, name):
    await inventory.create_coupon(name, 3)

    with pytest.raises(CouponExists):
        await inventory.create_coupon(name, 99)

    assert await inventory.get_coupon(name) == CouponStock(name, 3, 3)


async def test_get_coupon_of_unknown_name_is_none(inventory, name):
    assert await inventory.get_coupon(name) is None


async def test_reserve_takes_one_unit_and_writes_a_held_hold(inventory, pg, name):
    await inventory.create_coupon(name, 2)
    saga_id = new_saga_id()

    await inventory.reserve(saga_id, name, "alice")

    assert await inventory.get_coupon(name) == CouponStock(name, 2, 1)
    assert await holds_of(pg, name) == [("alice", "held")]
    assert await hold_status(pg, saga_id) == "held"
    await assert_conserved(pg, name)


async def test_reserve_replayed_with_same_saga_id_takes_stock_once(inventory, pg, name):
    await inventory.create_coupon(name, 2)
    saga_id = new_saga_id()

    await inventory.reserve(saga_id, name, "alice")
    await inventory.reserve(saga_id, name, "alice")

    assert await remaining(pg, name) == 1
    assert await holds_of(pg, name) == [("alice", "held")]


async def test_second_saga_of_same_user_is_already_claimed_without_taking_stock(
    inventory, pg, name
):
    await inventory.create_coupon(name, 5)
    first, second = new_saga_id(), new_saga_id()
    await inventory.reserve(first, name, "alice")

    with pytest.raises(AlreadyClaimed):
        await inventory.reserve(second, name, "alice")

    assert await remaining(pg, name) == 4
    assert await hold_status(pg, second) is None
    await assert_conserved(pg, name)


async def test_reserve_when_sold_out_raises_out_of_stock_and_leaves_no_hold(inventory, pg, name):
    await inventory.create_coupon(name, 1)
    await inventory.reserve(new_saga_id(), name, "alice")
    late = new_saga_id()

    with pytest.raises(OutOfStock):
        await inventory.reserve(late, name, "bob")

    assert await remaining(pg, name) == 0
    assert await hold_status(pg, late) is None
    assert await holds_of(pg, name) == [("alice", "held")]


async def test_reserve_of_zero_stock_coupon_raises_out_of_stock(inventory, pg, name):
    await inventory.create_coupon(name, 0)

    with pytest.raises(OutOfStock):
        await inventory.reserve(new_saga_id(), name, "alice")

    assert await holds_of(pg, name) == []


async def test_reserve_of_unknown_coupon_raises_coupon_not_found_and_leaves_no_hold(
    inventory, pg, name
):
    saga_id = new_saga_id()

    with pytest.raises(CouponNotFound):
        await inventory.reserve(saga_id, name, "alice")

    assert await hold_status(pg, saga_id) is None
    assert await holds_of(pg, name) == []


async def test_release_gives_the_unit_back_once(inventory, pg, name):
    await inventory.create_coupon(name, 3)
    saga_id = new_saga_id()
    await inventory.reserve(saga_id, name, "alice")

    assert await inventory.release(saga_id, name, "alice") is True
    assert await remaining(pg, name) == 3
    assert await hold_status(pg, saga_id) == "released"

    assert await inventory.release(saga_id, name, "alice") is False
    assert await remaining(pg, name) == 3
    await assert_conserved(pg, name)


async def test_release_before_reserve_leaves_a_tombstone_a_late_reserve_respects(
    inventory, pg, name
):
    await inventory.create_coupon(name, 2)
    saga_id = new_saga_id()

    assert await inventory.release(saga_id, name, "alice") is False
    with pytest.raises(SagaConflict):
        await inventory.reserve(saga_id, name, "alice")

    assert await remaining(pg, name) == 2
    assert await hold_status(pg, saga_id) == "released"
    await assert_conserved(pg, name)


async def test_release_racing_a_reserve_of_the_same_saga_gives_the_unit_back(inventory, pg, name):
    await inventory.create_coupon(name, 1)
    saga_id = new_saga_id()

    async with pg.acquire() as other, other.transaction():
        await other.fetchval("SELECT reserve_unit($1::uuid, $2, 'alice')", saga_id, name)
        racing = asyncio.ensure_future(inventory.release(saga_id, name, "alice"))
        await wait_until_blocked_by(pg, await other.fetchval("SELECT pg_backend_pid()"), racing)

    assert await racing is True
    assert await remaining(pg, name) == 1
    await assert_conserved(pg, name)


async def test_user_can_reserve_again_after_release(inventory, pg, name):
    await inventory.create_coupon(name, 3)
    first, second = new_saga_id(), new_saga_id()
    await inventory.reserve(first, name, "alice")
    await inventory.release(first, name, "alice")

    await inventory.reserve(second, name, "alice")

    assert await remaining(pg, name) == 2
    assert sorted(await holds_of(pg, name)) == [("alice", "held"), ("alice", "released")]
    await assert_conserved(pg, name)


async def test_confirm_is_idempotent(inventory, pg, name):
    await inventory.create_coupon(name, 1)
    saga_id = new_saga_id()
    await inventory.reserve(saga_id, name, "alice")

    await inventory.confirm(saga_id)
    await inventory.confirm(saga_id)

    assert await hold_status(pg, saga_id) == "confirmed"
    assert await remaining(pg, name) == 0
    await assert_conserved(pg, name)


async def test_release_after_confirm_keeps_the_unit_claimed(inventory, pg, name):
    await inventory.create_coupon(name, 1)
    saga_id = new_saga_id()
    await inventory.reserve(saga_id, name, "alice")
    await inventory.confirm(saga_id)

    assert await inventory.release(saga_id, name, "alice") is False

    assert await hold_status(pg, saga_id) == "confirmed"
    assert await remaining(pg, name) == 0


async def test_confirm_racing_another_confirm_of_the_same_saga_succeeds(inventory, pg, name):
    await inventory.create_coupon(name, 1)
    saga_id = new_saga_id()
    await inventory.reserve(saga_id, name, "alice")

    async with pg.acquire() as other, other.transaction():
        await other.execute(
            "UPDATE holds SET status = 'confirmed' WHERE saga_id = $1::uuid", saga_id
        )
        racing = asyncio.ensure_future(inventory.confirm(saga_id))
        await wait_until_blocked_by(pg, await other.fetchval("SELECT pg_backend_pid()"), racing)
    await racing

    assert await hold_status(pg, saga_id) == "confirmed"


async def test_confirm_after_release_raises_saga_conflict(inventory, pg, name):
    await inventory.create_coupon(name, 1)
    saga_id = new_saga_id()
    await inventory.reserve(saga_id, name, "alice")
    await inventory.release(saga_id, name, "alice")

    with pytest.raises(SagaConflict):
        await inventory.confirm(saga_id)

    assert await hold_status(pg, saga_id) == "released"
    assert await remaining(pg, name) == 1


async def test_confirm_of_unknown_saga_raises_saga_conflict(inventory):
    with pytest.raises(SagaConflict):
        await inventory.confirm(new_saga_id())


async def test_reserve_with_released_saga_id_raises_saga_conflict(inventory, pg, name):
    await inventory.create_coupon(name, 2)
    saga_id = new_saga_id()
    await inventory.reserve(saga_id, name, "alice")
    await inventory.release(saga_id, name, "alice")

    with pytest.raises(SagaConflict):
        await inventory.reserve(saga_id, name, "alice")

    assert await remaining(pg, name) == 2
    assert await holds_of(pg, name) == [("alice", "released")]


async def test_concurrent_reserves_by_distinct_users_sell_exactly_the_stock(inventory, pg, name):
    await inventory.create_coupon(name, 20)
    users = [f"user_{n}" for n in range(200)]

    counts = await outcomes([inventory.reserve(new_saga_id(), name, user) for user in users])

    assert counts == {"reserved": 20, "OutOfStock": 180}
    assert await remaining(pg, name) == 0
    holds = await holds_of(pg, name)
    assert [status for _, status in holds] == ["held"] * 20
    assert len({user for user, _ in holds}) == 20
    await assert_conserved(pg, name)


async def test_concurrent_reserves_by_one_user_take_one_unit(inventory, pg, name):
    await inventory.create_coupon(name, 5)

    counts = await outcomes([inventory.reserve(new_saga_id(), name, "dipper") for _ in range(30)])

    assert counts == {"reserved": 1, "ClaimInFlight": 29}  # its one hold is held, not confirmed
    assert await remaining(pg, name) == 4
    assert await holds_of(pg, name) == [("dipper", "held")]
    await assert_conserved(pg, name)


async def test_a_pooled_connection_comes_back_without_an_open_transaction(settings):
    """The pool's reset skips asyncpg's reset query but still ends a forgotten transaction."""
    pool = await asyncpg.create_pool(
        settings.database_url, min_size=1, max_size=1, reset=reset_connection
    )
    try:
        async with pool.acquire() as connection:
            await connection.execute("BEGIN")
            await connection.execute("CREATE TEMP TABLE forgotten (n int)")
            assert connection.is_in_transaction()
        async with pool.acquire() as connection:
            assert not connection.is_in_transaction()
            assert await connection.fetchval("SELECT to_regclass('forgotten')") is None
    finally:
        await pool.close()


async def test_warming_up_touches_no_row(inventory, pg):
    counts = "SELECT (SELECT count(*) FROM coupons), (SELECT count(*) FROM holds)"
    before = await pg.fetchrow(counts)

    await inventory.warm_up()

    assert await pg.fetchrow(counts) == before
