"""A failover that loses acknowledged commits never sells a unit twice.

The standby is promoted after its primary crashed with commits it never sent (its WAL
sender stopped: an asynchronous standby lagging behind). Those commits held units for
claims whose documents stand in MongoDB, and for a saga still in flight. The promoted
standby, on a new timeline, reserves nothing until the stock is reconciled
(sagas/lineage.py); then each of those sagas has its unit again, and the units the
failover seemed to free are not sold twice.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import asyncpg
import pytest

from orchestrator.bootstrap import postgres_pool
from sagas.claim import ClaimPayload, claim_saga
from sagas.errors import NotReconciled, OutOfStock, StoreUnavailable
from sagas.lineage import Reconciliation
from sagas.records import Phase, SagaEvent, SagaRecord, SagaStatus
from services.inventory import PostgresInventory
from tests.support.apart import Apart, saga_log_apart
from tests.support.invariants import read_facts
from tests.support.postgres_pair import PostgresPair, postgres_pair
from tests.support.settings import changed
from tests.support.waiting import eventually


@pytest.fixture
def pair() -> Iterator[PostgresPair]:
    with postgres_pair() as started:
        yield started


@pytest.fixture
async def pool(settings, pair: PostgresPair) -> AsyncIterator[asyncpg.Pool]:
    on_the_pair = changed(
        settings, {"database_url": pair.url(), "pg_pool_size": 4, "startup_wait_seconds": 0}
    )
    async with postgres_pool(on_the_pair) as opened:
        yield opened


@pytest.fixture
async def apart(settings) -> AsyncIterator[Apart]:
    async with saga_log_apart(settings) as kept_apart:
        yield kept_apart


class Sale:
    """Claims of one coupon made step by step, as the claim saga makes them."""

    def __init__(self, inventory: PostgresInventory, components, apart: Apart, coupon: str):
        self.inventory, self.claims, self.log = inventory, components.claims, apart.saga_log
        self.coupon = coupon
        self.sagas: dict[str, str] = {}

    async def claim(self, user: str) -> str:
        """reserve, record, confirm: a claim that stands."""
        saga_id = await self.reserve(user)
        await self.claims.record(saga_id, user, self.coupon, datetime.now(UTC))
        await self.inventory.confirm(saga_id)
        return saga_id

    async def reserve(self, user: str) -> str:
        saga_id = self.sagas[user] = str(uuid.uuid4())
        await self.inventory.reserve(saga_id, self.coupon, user)
        return saga_id

    async def in_flight(self, user: str) -> str:
        """A saga whose reserve landed and whose driver goes on: its record in the log."""
        saga_id = await self.reserve(user)
        payload = ClaimPayload(user, self.coupon, datetime.now(UTC))
        now = datetime.now(UTC).timestamp()
        record = SagaRecord(
            saga_id, "claim", payload.to_dict(), SagaStatus.RUNNING, "reserve", now, now
        )
        await self.log.create(record, [SagaEvent(now, "reserve", Phase.STARTED)])
        return saga_id


async def on_the_standby(pair: PostgresPair, coupon: str, users: int) -> bool:
    """The standby has replayed that many of the coupon's holds (and the schema first)."""
    try:
        count = await pair.standby.sql(f"SELECT count(*) FROM holds WHERE coupon_name = '{coupon}'")
    except asyncpg.UndefinedTableError:
        return False
    return count == users


async def test_units_a_failover_lost_are_not_sold_twice(components, apart, pair, pool, mongo, name):
    inventory = PostgresInventory(pool)
    definition = claim_saga(inventory, components.claims)
    reconcile = Reconciliation(inventory, components.claims, apart.saga_log, {"claim": definition})
    first = await reconcile()
    assert first is not None and first.was is None  # a new database: nothing to restore
    await inventory.create_coupon(name, 4)
    sale = Sale(inventory, components, apart, name)

    await sale.claim("ann")
    await eventually(lambda: on_the_standby(pair, name, 1))
    await pair.hold_back_replication()
    await sale.claim("bob")  # acknowledged, and never sent to the standby
    await sale.claim("cid")
    dan = await sale.in_flight("dan")
    await pair.crash_primary()
    await pair.promote_standby()

    # The new primary lacks three holds and shows their units free: it sells nothing yet.
    async def refused_until_reconciled() -> bool:
        try:
            await inventory.reserve(str(uuid.uuid4()), name, "eve")
        except NotReconciled:
            return True
        except StoreUnavailable:
            return False  # the pool still meeting the crashed primary's connections
        raise AssertionError("a unit was reserved on a history not reconciled")

    await eventually(refused_until_reconciled)
    assert await pool.fetchval("SELECT remaining_amount FROM coupons WHERE name = $1", name) == 3

    reconciled = await reconcile()

    assert reconciled is not None and reconciled.was is not None
    assert reconciled.now.timeline > reconciled.was.timeline
    restored = (
        reconciled.claims_restored,
        reconciled.claims_confirmed,
        reconciled.in_flight_restored,
    )
    assert restored in ((2, 0, 1), (2, 1, 1))  # ann's confirm may not have been sent
    assert reconciled.not_restored == []
    with pytest.raises(OutOfStock):  # every unit is someone's: none is sold twice
        await inventory.reserve(str(uuid.uuid4()), name, "eve")
    # dan's saga goes on: its record, then its confirm finds the unit it took.
    await components.claims.record(dan, "dan", name, datetime.now(UTC))
    await inventory.confirm(dan)
    facts = await read_facts(pool, mongo, name)
    assert facts.remaining_amount == 0
    assert sorted(facts.claims.values()) == ["ann", "bob", "cid", "dan"]
    assert {saga: status for saga, (_, status) in facts.holds.items()} == {
        saga: "confirmed" for saga in facts.claims
    }
    assert await reconcile() is None  # once per history


async def test_a_saga_whose_payload_cannot_be_read_is_reported_not_fatal(
    components, apart, pool, name
):
    """A claim saga in flight whose payload another version wrote (no claimed_at): the
    reconciliation of a new database goes on without it, and says so."""
    inventory = PostgresInventory(pool)
    definition = claim_saga(inventory, components.claims)
    now = datetime.now(UTC).timestamp()
    unreadable = SagaRecord(
        str(uuid.uuid4()),
        "claim",
        {"user_id": "ann", "coupon_name": name},
        SagaStatus.RUNNING,
        "reserve",
        now,
        now,
    )
    await apart.saga_log.create(unreadable, [SagaEvent(now, "reserve", Phase.STARTED)])
    reconcile = Reconciliation(inventory, components.claims, apart.saga_log, {"claim": definition})

    reconciled = await reconcile()

    assert reconciled is not None and reconciled.was is None
    assert [line for line in reconciled.not_restored if unreadable.saga_id in line], reconciled
    assert await reconcile() is None  # the history is reconciled all the same
