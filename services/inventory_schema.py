"""The inventory schema, applied only where the catalog lacks a part of it.

A restart must not queue behind traffic: `CREATE INDEX IF NOT EXISTS` waits for a lock
on its table even when the index exists, behind every open reserve transaction. So the
catalog (which takes no lock on our tables) is read first, and DDL runs only for a part
that is missing, or a function whose text changed (its comment carries a hash of it).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

from sagas.errors import StoreNotSetUp
from services.failures import unavailable_on_failure

# Any fixed number: every replica takes the same lock, so the schema is applied once at a time.
_SCHEMA_LOCK_ID = 0x636F75706F6E  # "coupon"

_PART = re.compile(r"^-- @(table|index|function) (\w+)$", re.MULTILINE)

_CATALOG = """
SELECT CASE c.relkind WHEN 'i' THEN 'index' ELSE 'table' END AS kind, c.relname AS name,
       NULL AS version
FROM pg_class c
WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p', 'i')
UNION ALL
SELECT 'function', p.proname, obj_description(p.oid, 'pg_proc')
FROM pg_proc p WHERE p.pronamespace = current_schema()::regnamespace
"""


@dataclass(frozen=True)
class SchemaPart:
    kind: str  # table, index or function
    name: str
    sql: str

    @property
    def version(self) -> str | None:
        """What the catalog must say of a function: a hash of its text (None: it exists)."""
        if self.kind != "function":
            return None
        return "schema " + hashlib.sha256(self.sql.encode()).hexdigest()[:16]

    @property
    def ddl(self) -> str:
        if self.version is None:
            return self.sql
        return f"{self.sql}\nCOMMENT ON FUNCTION {self.name} IS '{self.version}';"

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"


def schema_parts() -> list[SchemaPart]:
    text = resources.files("services").joinpath("inventory_schema.sql").read_text()
    pieces = _PART.split(text)[1:]  # the file's header comes before the first part
    return [
        SchemaPart(kind, name, sql.strip())
        for kind, name, sql in zip(pieces[0::3], pieces[1::3], pieces[2::3], strict=True)
    ]


async def missing_parts(connection: asyncpg.Connection) -> list[SchemaPart]:
    """The parts the catalog lacks, in the file's order. Reads the catalog only."""
    found = {(row["kind"], row["name"]): row["version"] for row in await connection.fetch(_CATALOG)}
    return [
        part
        for part in schema_parts()
        if (part.kind, part.name) not in found or found[(part.kind, part.name)] != part.version
    ]


async def apply_schema(pool: asyncpg.Pool) -> None:
    """Create what is missing; safe with many replicas starting at once. A complete
    schema costs one catalog read: no lock is taken, no DDL waits behind a transaction."""
    with unavailable_on_failure("postgresql"):
        async with pool.acquire() as connection:
            if not await missing_parts(connection):
                return
            async with connection.transaction():
                await connection.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK_ID)
                # Read again under the lock: another replica may have applied it meanwhile.
                for part in await missing_parts(connection):
                    await connection.execute(part.ddl)


async def check_schema(pool: asyncpg.Pool) -> None:
    """For a client of the service's database (the replay tool): the schema is the
    service's to apply; say so if it is not there."""
    with unavailable_on_failure("postgresql"):
        async with pool.acquire() as connection:
            missing = await missing_parts(connection)
    if missing:
        raise StoreNotSetUp(
            "postgresql",
            f"the schema is missing or out of date ({', '.join(map(str, missing))}); "
            "start coupon-service once against this database to apply it",
        )
