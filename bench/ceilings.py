"""The ceilings a run is judged against, measured in the same run on the same machine."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import asyncpg

from bench.load import LoadResult, fire
from bench.serving import spawned
from devstack.servers import free_port

# One transaction of a client, made ready on its connection (its statements prepared):
# called with the client's number and the transaction's, both counting from 0.
Transaction = Callable[[int, int], Awaitable[object]]

_HOT_ROW = """
CREATE TABLE IF NOT EXISTS bench_hot_row (id int PRIMARY KEY, n bigint NOT NULL);
INSERT INTO bench_hot_row VALUES (1, 9223372036854775807)
ON CONFLICT (id) DO UPDATE SET n = 9223372036854775807;
"""

# The hold-insert ceiling's own tables, named apart from the hot-row ceiling's and from
# the service's, created and dropped by each measurement.
HOLD_TX_TABLES = ("bench_hold_tx_stock", "bench_hold_tx_holds")
HOLD_TX_CLIENTS = 16  # issue 12's figure: pgbench-style, 16 clients
_HOLD_TX = """
CREATE TABLE IF NOT EXISTS bench_hold_tx_stock (id int PRIMARY KEY, n bigint NOT NULL);
INSERT INTO bench_hold_tx_stock VALUES (1, 9223372036854775807)
ON CONFLICT (id) DO UPDATE SET n = 9223372036854775807;
CREATE TABLE IF NOT EXISTS bench_hold_tx_holds (
    id bigint PRIMARY KEY, user_id text NOT NULL, coupon_name text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
"""
# Far above any client's count of transactions: every row's id is its own.
_IDS_PER_CLIENT = 10**12


async def _transactions_per_second(
    database_url: str,
    clients: int,
    seconds: float,
    tables: str,
    drop: str,
    prepare: Callable[[asyncpg.Connection], Awaitable[Transaction]],
) -> float:
    """Transactions per second of `clients` asyncpg connections, each running the
    transaction `prepare` made on it for `seconds`, on tables created first and dropped
    after."""
    pool = await asyncpg.create_pool(database_url, min_size=clients, max_size=clients)
    try:
        await pool.execute(tables)
        done = 0
        deadline = time.monotonic() + seconds

        async def client(number: int) -> None:
            nonlocal done
            async with pool.acquire() as connection:
                transaction = await prepare(connection)
                count = 0
                while time.monotonic() < deadline:
                    await transaction(number, count)
                    count += 1
                done += count

        started = time.monotonic()
        await asyncio.gather(*(client(number) for number in range(clients)))
        return done / (time.monotonic() - started)
    finally:
        await pool.execute(drop)
        await pool.close()


async def hot_row_rate(database_url: str, concurrency: int, seconds: float) -> float:
    """Guarded UPDATEs of one row per second through asyncpg: the stock row's ceiling."""

    async def prepare(connection: asyncpg.Connection) -> Transaction:
        update = await connection.prepare(
            "UPDATE bench_hot_row SET n = n - 1 WHERE id = 1 AND n > 0"
        )
        return lambda _client, _count: update.fetch()

    return await _transactions_per_second(
        database_url, concurrency, seconds, _HOT_ROW, "DROP TABLE IF EXISTS bench_hot_row", prepare
    )


async def hold_tx_rate(database_url: str, seconds: float, clients: int = HOLD_TX_CLIENTS) -> float:
    """Transactions per second of `BEGIN; INSERT a hold row (its own id and user);
    UPDATE the one stock row, guarded; COMMIT` through asyncpg, pgbench-style (each
    statement its own round trip): what a hold insert and a guarded decrement of one
    hot row allow together."""

    async def prepare(connection: asyncpg.Connection) -> Transaction:
        insert = await connection.prepare(
            "INSERT INTO bench_hold_tx_holds (id, user_id, coupon_name) VALUES ($1, $2, 'hot')"
        )
        update = await connection.prepare(
            "UPDATE bench_hold_tx_stock SET n = n - 1 WHERE id = 1 AND n > 0"
        )

        async def transaction(client: int, count: int) -> None:
            row = client * _IDS_PER_CLIENT + count
            async with connection.transaction():
                await insert.fetch(row, f"user_{row}")
                await update.fetch()

        return transaction

    drop = f"DROP TABLE IF EXISTS {', '.join(HOLD_TX_TABLES)}"
    return await _transactions_per_second(database_url, clients, seconds, _HOLD_TX, drop, prepare)


async def bare_gateway_rate(base_url: str, concurrency: int, requests: int) -> float:
    """GET /health per second: the gateway doing nothing but HTTP."""
    result = await fire(
        base_url, [("GET", "/health", None)] * requests, concurrency=concurrency, label="/health"
    )
    return result.per_second


async def floor_latency(
    database_url: str, redis_url: str, requests: int, concurrency: int, workers: int
) -> LoadResult:
    """The same load against `bench.floor`: one hot-row UPDATE and one SET per request."""
    args = ("--workers", str(workers), "--database-url", database_url, "--redis-url", redis_url)
    async with spawned("bench.floor", free_port(), *args) as (base, _pid):
        return await fire(
            base, [("POST", "/floor", {})] * requests, concurrency=concurrency, label="floor"
        )
