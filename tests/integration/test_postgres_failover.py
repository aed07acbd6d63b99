"""PostgreSQL failing over under a running pool: DATABASE_URL names the primary and its
standby (target_session_attrs=read-write), and the same pool follows the primary to the
promoted standby, without a restart. Until there is one, every call is a 503
(StoreUnavailable), never a 500.

Each test has a primary and a streaming standby of its own (tests/support/postgres_pair.py).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from orchestrator.bootstrap import postgres_pool
from orchestrator.process.preflight import check_room
from orchestrator.settings import Settings
from sagas.errors import NotReconciled, StoreNotSetUp, StoreUnavailable
from services.inventory import PostgresInventory
from tests.support.postgres_pair import PostgresPair, postgres_pair
from tests.support.settings import changed
from tests.support.waiting import eventually


@pytest.fixture
def pair() -> Iterator[PostgresPair]:
    with postgres_pair() as started:
        yield started


@pytest.fixture
async def pool(settings: Settings, pair: PostgresPair) -> AsyncIterator[asyncpg.Pool]:
    """The service's pool (bootstrap's), on both hosts; its schema applied on the primary."""
    on_the_pair = changed(
        settings, {"database_url": pair.url(), "pg_pool_size": 4, "startup_wait_seconds": 0}
    )
    async with postgres_pool(on_the_pair) as opened:
        yield opened


class Reserves:
    """One unit at a time of a coupon, each for a new user: what a sale asks of the pool."""

    def __init__(self, inventory: PostgresInventory, coupon: str) -> None:
        self.inventory = inventory
        self.coupon = coupon
        self.refusals: list[StoreUnavailable] = []

    async def one(self) -> None:
        await self.inventory.reserve(str(uuid.uuid4()), self.coupon, f"user_{uuid.uuid4().hex}")

    async def one_lands(self) -> bool:
        """Try one; a refusal must be a StoreUnavailable (a 503), and is kept."""
        try:
            await self.one()
        except StoreUnavailable as refused:
            self.refusals.append(refused)
            return False
        return True


async def reconciled(inventory: PostgresInventory) -> None:
    """What the stock's reconciliation records when it finds nothing lost (no claim
    documents here): reserves may go on, on the history the server is on now."""
    await inventory.mark_reconciled(await inventory.lineage())


async def sale_on(pool: asyncpg.Pool, name: str) -> Reserves:
    inventory = PostgresInventory(pool)
    await reconciled(inventory)
    await inventory.create_coupon(name, 100)
    reserves = Reserves(inventory, name)
    await reserves.one()
    return reserves


async def held_on(node_url: str, coupon: str) -> int:
    connection = await asyncpg.connect(node_url)
    try:
        return int(
            await connection.fetchval("SELECT count(*) FROM holds WHERE coupon_name = $1", coupon)
        )
    finally:
        await connection.close()


async def reserves_refused_for_the_new_timeline(reserves: Reserves) -> bool:
    """The promoted standby refuses to reserve until the stock is reconciled there."""
    try:
        await reserves.one()
    except NotReconciled:
        return True
    except StoreUnavailable:
        return False  # no read-write host yet
    raise AssertionError("a reserve ran on a history not reconciled")


async def test_the_pool_follows_the_primary_to_the_promoted_standby(pool, pair, name):
    reserves = await sale_on(pool, name)

    await pair.primary.stop()
    # No primary: the old one's connections are dead, and the standby takes no writes.
    with pytest.raises(StoreUnavailable):
        await reserves.one()
    await pair.promote_standby()

    # A new timeline: nothing is reserved there until the stock is reconciled.
    await eventually(lambda: reserves_refused_for_the_new_timeline(reserves))
    await reconciled(reserves.inventory)
    await eventually(reserves.one_lands)
    for _ in range(5):
        await reserves.one()
    assert await held_on(pair.standby.url, name) == 7


async def test_a_primary_fenced_read_only_is_left_for_the_promoted_standby(pool, pair, name):
    """The old primary stays up, read-only: its pooled connections still answer, and
    would refuse every write for as long as they live. The first refusal has the pool
    make its connections again, with the hosts' roles as they are now."""
    reserves = await sale_on(pool, name)

    await pair.fence_primary()
    with pytest.raises(StoreUnavailable):
        await reserves.one()  # on a connection to the fenced primary
    # Neither host takes writes: asyncpg finds no read-write one.
    with pytest.raises(StoreUnavailable):
        await reserves.one()
    await pair.promote_standby()
    await eventually(lambda: reserves_refused_for_the_new_timeline(reserves))
    await reconciled(reserves.inventory)

    await eventually(reserves.one_lands)
    for _ in range(5):
        await reserves.one()
    assert await held_on(pair.standby.url, name) == 7


async def test_a_statement_sent_to_the_demoted_node_is_a_503(settings, pair, name):
    """A client that names only the old primary (a stale URL, a DNS name not moved yet)
    reaches a standby once that node rejoins as one: its writes are refused, a 503 that
    took nothing, never a 500."""
    only_the_old_primary = {"database_url": pair.primary.url, "pg_pool_size": 2}
    async with postgres_pool(changed(settings, only_the_old_primary)) as stale:
        reserves = await sale_on(stale, name)
        await pair.primary.stop()
        await pair.promote_standby()
        await pair.demote_old_primary()

        async def refused_as_read_only() -> bool:
            with pytest.raises(StoreUnavailable) as refused:
                await reserves.one()
            return isinstance(refused.value.__cause__, asyncpg.ReadOnlySQLTransactionError)

        await eventually(refused_as_read_only)
        with pytest.raises(StoreUnavailable) as refused:
            await reserves.one()
        assert not refused.value.maybe_applied


async def test_the_budget_is_checked_on_the_primary_whichever_host_it_is(pool, pair):
    """Every connection of PG_MAX_CONNECTIONS goes to the primary; a standby gets none
    (asyncpg closes its connection to one as soon as it sees it is read-only)."""
    with pytest.raises(StoreNotSetUp, match=f"does not fit 127.0.0.1:{pair.primary.port}:"):
        await check_room(pool, 100_000)

    await pair.primary.stop()
    await pair.promote_standby()

    async def checked_on_the_promoted_standby() -> bool:
        try:
            await check_room(pool, 100_000)
        except StoreUnavailable:
            return False
        except StoreNotSetUp as refused:
            return f"does not fit 127.0.0.1:{pair.standby.port}:" in str(refused)
        raise AssertionError("a budget of 100,000 connections fitted")

    await eventually(checked_on_the_promoted_standby)
