"""The inventory schema is applied only where the catalog lacks a part, so a restart never
queues behind a sale's open transactions; a client only checks it is there."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from sagas.errors import StoreNotSetUp
from services.inventory_schema import apply_schema, check_schema, missing_parts, schema_parts

HANG_GUARD_SECONDS = 60  # far past any honest schema check: only a wait on a lock gets here


@pytest.fixture
async def fresh_pool(settings) -> AsyncIterator[asyncpg.Pool]:
    """A pool on a database of its own, on the session's PostgreSQL, dropped after."""
    server = settings.database_url.rsplit("/", 1)[0]
    database = f"schema_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(f"{server}/postgres")
    await admin.execute(f'CREATE DATABASE "{database}"')
    pool = await asyncpg.create_pool(f"{server}/{database}", min_size=1, max_size=4)
    try:
        yield pool
    finally:
        await pool.close()
        await admin.execute(f'DROP DATABASE "{database}" WITH (FORCE)')
        await admin.close()


async def test_replicas_starting_at_once_apply_the_whole_schema_once(fresh_pool):
    await asyncio.gather(*(apply_schema(fresh_pool) for _ in range(4)))

    async with fresh_pool.acquire() as connection:
        assert await missing_parts(connection) == []
    await check_schema(fresh_pool)


async def test_a_restart_does_not_wait_behind_an_open_reserve(fresh_pool):
    await apply_schema(fresh_pool)
    await fresh_pool.execute("INSERT INTO coupons VALUES ('SALE', 5, 5)")
    # The stock reconciled on this server's history (nothing to restore: a new database).
    await fresh_pool.execute(
        "INSERT INTO inventory_lineage SELECT true, * FROM inventory_lineage_now()"
    )
    async with fresh_pool.acquire() as selling:
        reserve = selling.transaction()
        await reserve.start()
        # Left open: RowExclusiveLock on holds and coupons, as a reserve in flight holds.
        assert await selling.fetchval(
            "SELECT reserve_unit($1::uuid, 'SALE', 'alice')", uuid.uuid4()
        ) == ("reserved")

        await asyncio.wait_for(apply_schema(fresh_pool), HANG_GUARD_SECONDS)

        assert selling.is_in_transaction()
        await reserve.rollback()


async def test_a_missing_index_is_made_again(fresh_pool):
    await apply_schema(fresh_pool)
    await fresh_pool.execute("DROP INDEX holds_held_by_age")
    async with fresh_pool.acquire() as connection:
        assert [str(part) for part in await missing_parts(connection)] == [
            "index holds_held_by_age"
        ]

    await apply_schema(fresh_pool)

    assert await fresh_pool.fetchval("SELECT to_regclass('holds_held_by_age') IS NOT NULL")


async def test_a_function_whose_text_changed_is_replaced(fresh_pool):
    await apply_schema(fresh_pool)
    # As an older release left it: another body, another version in its comment.
    await fresh_pool.execute(
        "CREATE OR REPLACE FUNCTION release_unit(p_saga_id uuid, p_coupon text, p_user text) "
        "RETURNS boolean LANGUAGE sql AS $$ SELECT false $$; "
        "COMMENT ON FUNCTION release_unit IS 'schema 0000000000000000'"
    )

    await apply_schema(fresh_pool)

    (release,) = [part for part in schema_parts() if part.name == "release_unit"]
    row = await fresh_pool.fetchrow(
        "SELECT prosrc, obj_description(oid, 'pg_proc') AS version "
        "FROM pg_proc WHERE proname = 'release_unit'"
    )
    assert row["version"] == release.version
    assert "remaining_amount + 1" in row["prosrc"]


async def test_a_client_is_told_when_the_schema_is_not_there(fresh_pool):
    with pytest.raises(StoreNotSetUp, match=r"table coupons.*start coupon-service"):
        await check_schema(fresh_pool)
    assert await fresh_pool.fetchval("SELECT to_regclass('coupons')") is None  # nothing made
