"""Inventory in PostgreSQL: coupons with their stock, and one hold row per claim saga."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import astuple, dataclass
from typing import Any

import asyncpg

from sagas.errors import (
    AlreadyClaimed,
    ClaimInFlight,
    CouponExists,
    CouponNotFound,
    NotReconciled,
    OutOfStock,
    SagaConflict,
)
from sagas.ports import CouponStock, CouponTally, Hold, HoldStatus, Lineage, LostHold, StockSnapshot
from services.failures import unavailable_on_failure
from services.live_connections import LiveConnections

_RESERVE_REJECTIONS: dict[str, type[Exception]] = {
    "already_claimed": AlreadyClaimed,
    "out_of_stock": OutOfStock,
    "coupon_not_found": CouponNotFound,
}

_RESERVE = "SELECT reserve_unit($1::uuid, $2, $3)"
_RESERVE_MANY = "SELECT reserve_units($1::uuid[], $2::text[], $3::text[])"
# The server is on a history the stock was not reconciled on: nothing was reserved.
_UNRECONCILED = "unreconciled"
_MARK_RECONCILED = """
INSERT INTO inventory_lineage (system_identifier, timeline) VALUES ($1, $2)
ON CONFLICT (only_row) DO UPDATE
SET system_identifier = $1, timeline = $2, reconciled_at = now()
"""
# Any fixed number, apart from the schema's: one reconciliation at a time.
_RECONCILING_LOCK_ID = 0x6C696E65616765  # "lineage"


def _nothing() -> None:
    pass


# The user's unit is held by this saga, still in flight: 'in_flight:<saga id>'.
_IN_FLIGHT = "in_flight:"
# The nil uuid: uuid4 never makes it, so no saga has it.
_NO_SAGA = "00000000-0000-0000-0000-000000000000"

# Each saga's hold confirmed (confirm_units): 'confirmed', 'missing' or 'unreconciled'.
_CONFIRM = "SELECT (confirm_units(ARRAY[$1::uuid]))[1]"
_CONFIRM_MANY = "SELECT confirm_units($1::uuid[])"


_HOLD_COLUMNS = """
saga_id::text AS saga_id, coupon_name, user_id, status, created_at,
extract(epoch FROM now() - updated_at)::float8 AS age_seconds
"""

# A recount is two statements in one transaction: lock the coupon's row, then count. A
# reserve or release changes its hold first and the stock after, under the row lock; so
# once we hold the lock, each one has either committed both (and a new statement, under
# READ COMMITTED, sees its hold) or will change the stock after us. Counting in the same
# statement that waits for the lock would count from a snapshot taken before the wait and
# miss every reserve that committed during it: stock one unit too high for each.
_LOCK_STOCK = "SELECT remaining_amount FROM coupons WHERE name = $1 FOR UPDATE"
_RECOUNT = """
UPDATE coupons
SET remaining_amount = amount - (
    SELECT count(*) FROM holds WHERE coupon_name = $1 AND status <> 'released'
)
WHERE name = $1
RETURNING remaining_amount
"""


# The live holds of each coupon are read through the one-live-hold-per-user index.
_TALLIES = """
SELECT c.name, c.amount, c.remaining_amount,
       count(*) FILTER (WHERE h.status = 'held') AS held,
       count(*) FILTER (WHERE h.status = 'confirmed') AS confirmed
FROM (SELECT name, amount, remaining_amount, created_at FROM coupons
      WHERE $2::text IS NULL OR name = $2
      ORDER BY created_at DESC, name LIMIT $1) AS c
LEFT JOIN holds h ON h.coupon_name = c.name AND h.status <> 'released'
GROUP BY c.name, c.amount, c.remaining_amount, c.created_at
ORDER BY c.created_at DESC, c.name
"""


# Both aggregates take the same rows in the same order: user i has status i.
_HOLDERS_IF_SOLD_OUT = """
SELECT coupons.remaining_amount, live.users, live.statuses
FROM coupons CROSS JOIN LATERAL (
    SELECT coalesce(array_agg(user_id), '{}') AS users,
           coalesce(array_agg(status), '{}') AS statuses
    FROM (SELECT user_id, status FROM holds
          WHERE coupon_name = coupons.name AND status <> 'released' LIMIT $2) AS holders
) AS live
WHERE coupons.name = $1
"""


def statement_cache_size(pooler: str) -> int:
    """asyncpg's per-connection cache of named prepared statements: its default size, or
    none behind a transaction pooler.

    A named statement lives on the server connection it was prepared on, and a transaction
    pooler hands the next transaction to any server connection: PgBouncer up to 1.20 keeps
    no prepared statements at all ("prepared statement does not exist"). With the cache off
    asyncpg (0.29 and later) still describes a statement as an unnamed one, but then sends
    it again with its Bind, Execute and Sync in one message batch, which a pooler keeps on
    one server connection. Measured against PgBouncer 1.18 (tests/pgbouncer).
    """
    return 0 if pooler == "transaction" else 100


async def reset_connection(connection: asyncpg.Connection) -> None:
    """What a pool runs on each connection it gets back, instead of asyncpg's default.

    The default sends a reset query (unlisten, unlock, close cursors, RESET ALL): one more
    round trip for every statement, for session state these statements never create.
    Only a transaction left open (a cancelled call) must not outlive the checkout.
    """
    if connection.is_in_transaction():
        await connection.execute("ROLLBACK")


class PostgresInventory:
    """Every operation is one statement (one round trip, one short transaction).

    READ COMMITTED is enough: the stock changes only through guarded UPDATEs that take
    the row lock and re-check their condition, and holds are serialised per user by the
    partial unique index.

    Each call runs on a connection whose session the server has not already ended
    (services/live_connections.py).
    """

    def __init__(
        self, pool: asyncpg.Pool, *, on_unreconciled: Callable[[], None] = _nothing
    ) -> None:
        """`on_unreconciled`: called when a reserve finds the server on a history the
        stock was not reconciled on (a promoted standby): start the reconciliation."""
        self._connections = LiveConnections(pool)
        self._on_unreconciled = on_unreconciled

    async def warm_up(self) -> None:
        """Run the claim path's statements once on every pooled connection, touching no
        row (no coupon has an empty name, no saga the nil id): asyncpg prepares them and
        PostgreSQL plans them now, not in the first second of a sale. Behind a
        transaction pooler nothing stays prepared; this then opens the pooler's server
        connections."""

        async def prepare(connection: asyncpg.Connection) -> None:
            await connection.fetchval(_RESERVE, _NO_SAGA, "", "")
            await connection.fetchval(_CONFIRM, _NO_SAGA)
            await connection.fetchval(_RESERVE_MANY, [_NO_SAGA], [""], [""])
            await connection.fetchval(_CONFIRM_MANY, [_NO_SAGA])

        connections = self._connections.pool.get_max_size()
        with unavailable_on_failure("postgresql"):
            await asyncio.gather(*(self._connections.run(prepare) for _ in range(connections)))

    async def create_coupon(self, name: str, amount: int) -> CouponStock:
        with unavailable_on_failure("postgresql"):
            created = await self._connections.fetchval(
                "INSERT INTO coupons (name, amount, remaining_amount) VALUES ($1, $2, $2) "
                "ON CONFLICT (name) DO NOTHING RETURNING true",
                name,
                amount,
            )
        if not created:
            raise CouponExists(name)
        return CouponStock(name, amount, amount)

    async def get_coupon(self, name: str) -> CouponStock | None:
        with unavailable_on_failure("postgresql"):
            row = await self._connections.fetchrow(
                "SELECT name, amount, remaining_amount FROM coupons WHERE name = $1", name
            )
        return None if row is None else _stock(row)

    async def reserve(self, saga_id: str, coupon_name: str, user_id: str) -> None:
        with unavailable_on_failure("postgresql"):
            outcome = await self._connections.fetchval(_RESERVE, saga_id, coupon_name, user_id)
        if refusal := self._refusal(outcome, saga_id, coupon_name):
            raise refusal

    async def reserve_many(self, holds: Sequence[HoldRequest]) -> list[Exception | None]:
        """`reserve` for each hold, in one round trip and one transaction (reserve_units):
        None for a hold reserved, or the error `reserve` would have raised for it. A
        failure of the call itself raises, for all of them."""
        with unavailable_on_failure("postgresql"):
            outcomes = await self._connections.fetchval(
                _RESERVE_MANY,
                [hold.saga_id for hold in holds],
                [hold.coupon_name for hold in holds],
                [hold.user_id for hold in holds],
            )
        return [
            self._refusal(outcome, hold.saga_id, hold.coupon_name)
            for hold, outcome in zip(holds, outcomes, strict=True)
        ]

    def _refusal(self, outcome: str, saga_id: str, coupon_name: str) -> Exception | None:
        if outcome == _UNRECONCILED:
            self._on_unreconciled()
            return NotReconciled()
        return _reserve_refusal(outcome, saga_id, coupon_name)

    async def release(self, saga_id: str, coupon_name: str, user_id: str) -> bool:
        """True if this call gave the unit back; False if nothing was held for the saga."""
        with unavailable_on_failure("postgresql"):
            return bool(
                await self._connections.fetchval(
                    "SELECT release_unit($1::uuid, $2, $3)", saga_id, coupon_name, user_id
                )
            )

    async def confirm(self, saga_id: str) -> None:
        with unavailable_on_failure("postgresql"):
            outcome = await self._connections.fetchval(_CONFIRM, saga_id)
        if refusal := self._not_confirmed(outcome, saga_id):
            raise refusal

    async def confirm_many(self, saga_ids: Sequence[str]) -> list[Exception | None]:
        """`confirm` for each saga, in one statement: None for a saga confirmed, or the
        error `confirm` would have raised for it."""
        with unavailable_on_failure("postgresql"):
            outcomes = await self._connections.fetchval(_CONFIRM_MANY, list(saga_ids))
        return [
            self._not_confirmed(outcome, saga_id)
            for saga_id, outcome in zip(saga_ids, outcomes, strict=True)
        ]

    def _not_confirmed(self, outcome: str, saga_id: str) -> Exception | None:
        if outcome == _UNRECONCILED:
            self._on_unreconciled()
            return NotReconciled()
        return None if outcome == HoldStatus.CONFIRMED else _nothing_to_confirm(saga_id)

    async def hold_status(self, coupon_name: str, user_id: str) -> HoldStatus | None:
        """One read of the one-live-hold index: no lock, no write."""
        with unavailable_on_failure("postgresql"):
            status = await self._connections.fetchval(
                "SELECT status FROM holds WHERE coupon_name = $1 AND user_id = $2 "
                "AND status <> 'released'",
                coupon_name,
                user_id,
            )
        return None if status is None else HoldStatus(status)

    async def holders_if_sold_out(
        self, coupon_name: str, limit: int
    ) -> dict[str, HoldStatus] | None:
        """One statement, so the stock and the holders are one snapshot."""
        with unavailable_on_failure("postgresql"):
            row = await self._connections.fetchrow(_HOLDERS_IF_SOLD_OUT, coupon_name, limit + 1)
        if row is None or row["remaining_amount"] > 0:
            return None
        return dict(zip(row["users"], map(HoldStatus, row["statuses"]), strict=True))

    async def lineage(self) -> Lineage:
        with unavailable_on_failure("postgresql"):
            row = await self._connections.fetchrow("SELECT * FROM inventory_lineage_now()")
        return Lineage(row["system_identifier"], row["timeline"])

    async def reconciled_lineage(self) -> Lineage | None:
        with unavailable_on_failure("postgresql"):
            row = await self._connections.fetchrow(
                "SELECT system_identifier, timeline FROM inventory_lineage"
            )
        return None if row is None else Lineage(row["system_identifier"], row["timeline"])

    async def mark_reconciled(self, lineage: Lineage) -> None:
        with unavailable_on_failure("postgresql"):
            await self._connections.fetchval(_MARK_RECONCILED, *astuple(lineage))

    @asynccontextmanager
    async def reconciling(self) -> AsyncIterator[None]:
        """A session-level advisory lock on a connection of its own, for the whole
        reconciliation (which reads MongoDB and the saga log meanwhile)."""
        with unavailable_on_failure("postgresql"):
            async with self._connections.pool.acquire() as connection:
                await connection.execute("SELECT pg_advisory_lock($1)", _RECONCILING_LOCK_ID)
                try:
                    yield
                finally:
                    await connection.execute("SELECT pg_advisory_unlock($1)", _RECONCILING_LOCK_ID)

    async def restore_holds(self, holds: Sequence[LostHold], status: HoldStatus) -> list[str]:
        with unavailable_on_failure("postgresql"):
            return list(
                await self._connections.fetchval(
                    "SELECT restore_holds($1::uuid[], $2::text[], $3::text[], $4)",
                    [hold.saga_id for hold in holds],
                    [hold.coupon_name for hold in holds],
                    [hold.user_id for hold in holds],
                    status.value,
                )
            )

    async def coupon_names(self) -> list[str]:
        with unavailable_on_failure("postgresql"):
            rows = await self._connections.fetch("SELECT name FROM coupons ORDER BY name")
        return [row["name"] for row in rows]

    async def tallies(self, limit: int, name: str | None = None) -> list[CouponTally]:
        with unavailable_on_failure("postgresql"):
            rows = await self._connections.fetch(_TALLIES, limit, name)
        return [CouponTally(_stock(row), row["held"], row["confirmed"]) for row in rows]

    async def snapshot(self, coupon_name: str) -> StockSnapshot | None:
        """The stock row and its holds from one REPEATABLE READ snapshot: never torn."""

        async def read(connection: asyncpg.Connection) -> tuple[Any, list[Any]]:
            async with connection.transaction(isolation="repeatable_read", readonly=True):
                row = await connection.fetchrow(
                    "SELECT name, amount, remaining_amount FROM coupons WHERE name = $1",
                    coupon_name,
                )
                holds = await connection.fetch(
                    f"SELECT {_HOLD_COLUMNS} FROM holds WHERE coupon_name = $1", coupon_name
                )
            return row, holds

        with unavailable_on_failure("postgresql"):
            row, holds = await self._connections.run(read)
        if row is None:
            return None
        return StockSnapshot(_stock(row), [_hold(hold) for hold in holds])

    async def hold(self, saga_id: str) -> Hold | None:
        with unavailable_on_failure("postgresql"):
            row = await self._connections.fetchrow(
                f"SELECT {_HOLD_COLUMNS} FROM holds WHERE saga_id = $1::uuid", saga_id
            )
        return None if row is None else _hold(row)

    async def stale_holds(self, older_than_seconds: float, limit: int) -> list[str]:
        with unavailable_on_failure("postgresql"):
            rows = await self._connections.fetch(
                "SELECT saga_id::text AS saga_id FROM holds WHERE status = 'held' "
                "AND updated_at < now() - make_interval(secs => $1) ORDER BY updated_at LIMIT $2",
                older_than_seconds,
                limit,
            )
        return [row["saga_id"] for row in rows]

    async def recount(self, coupon_name: str) -> tuple[int, int]:

        async def lock_and_count(connection: asyncpg.Connection) -> tuple[int, int]:
            async with connection.transaction():
                locked = await connection.fetchrow(_LOCK_STOCK, coupon_name)
                if locked is None:
                    raise CouponNotFound(coupon_name)
                after = await connection.fetchval(_RECOUNT, coupon_name)
            return locked["remaining_amount"], after

        with unavailable_on_failure("postgresql"):
            return await self._connections.run(lock_and_count)


@dataclass(frozen=True)
class HoldRequest:
    """One saga's reserve, as a batch carries it."""

    saga_id: str
    coupon_name: str
    user_id: str


def _reserve_refusal(outcome: str, saga_id: str, coupon_name: str) -> Exception | None:
    """What reserve_unit's (or reserve_units') answer means: None when the unit is held."""
    if outcome == "reserved":
        return None
    if outcome == "released":
        return SagaConflict(f"saga {saga_id} was compensated; its hold is released")
    if outcome.startswith(_IN_FLIGHT):
        return ClaimInFlight(coupon_name, outcome.removeprefix(_IN_FLIGHT))
    return _RESERVE_REJECTIONS[outcome](coupon_name)


def _nothing_to_confirm(saga_id: str) -> SagaConflict:
    return SagaConflict(f"saga {saga_id} has no live hold to confirm")


def _hold(row: Any) -> Hold:
    return Hold(
        row["saga_id"],
        row["coupon_name"],
        row["user_id"],
        HoldStatus(row["status"]),
        row["created_at"],
        row["age_seconds"],
    )


def _stock(row: Any) -> CouponStock:
    return CouponStock(row["name"], row["amount"], row["remaining_amount"])
