"""A reserve transaction left open, as in the middle of a sale: neither the replay tool nor
a restarting gateway waits behind it (the schema is only checked), and the tool stays a
small client of every store."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.support.api import claim, create
from tests.support.cli import coupon_saga
from tests.support.proxy import through
from tests.support.servers import gateway_process
from tests.support.settings import changed


@pytest.fixture
async def open_reserve(pg: asyncpg.Pool, name: str) -> AsyncIterator[None]:
    """A unit of a fresh coupon reserved in a transaction held open: the locks a reserve in
    flight holds on `holds` and `coupons` (and the coupon's row)."""
    await pg.execute("INSERT INTO coupons (name, amount, remaining_amount) VALUES ($1, 5, 5)", name)
    async with pg.acquire() as connection:
        reserve = connection.transaction()
        await reserve.start()
        outcome = await connection.fetchval(
            "SELECT reserve_unit($1::uuid, $2, 'in_flight')", uuid.uuid4(), name
        )
        assert outcome == "reserved"
        yield
        assert connection.is_in_transaction()  # held open all along
        await reserve.rollback()


async def test_the_replay_tool_is_a_small_client_that_waits_for_no_schema_lock(
    settings, open_reserve, pg_proxy, mongo_proxy, redis_proxy, name
):
    """Counted on the way to each server: at most two connections a store."""
    counted = changed(
        through(settings, database_url=pg_proxy, mongo_url=mongo_proxy, redis_url=redis_proxy),
        {"store_timeout_seconds": 5.0},
    )

    code, _, err = await coupon_saga(counted, "audit", "--coupon", name)
    assert (code, err) == (0, "")
    code, _, err = await coupon_saga(counted, "recover", "--older-than", "3600", "--json")
    assert (code, err) == (0, "")

    assert 1 <= pg_proxy.most_connections <= 2
    assert 1 <= mongo_proxy.most_connections <= 2
    assert 1 <= redis_proxy.most_connections <= 2


async def test_a_restart_during_a_sale_does_not_wait_behind_an_open_reserve(
    http, settings, service, open_reserve, tmp_path, name
):
    """The schema is there (the session's service applied it): a new gateway only reads
    the catalog, and comes up while the reserve's locks are held."""
    with gateway_process(settings, tmp_path / "restarted.log", workers=1) as restarted:
        other = f"{name}_other"
        await create(http, restarted, other, 1)
        assert (await claim(http, restarted, "after_restart", other))[0] == 200
