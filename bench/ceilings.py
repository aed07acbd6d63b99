"""The ceilings a run is judged against, measured in the same run on the same machine."""

from __future__ import annotations

import asyncio
import time

import asyncpg

from bench.load import LoadResult, fire
from bench.serving import spawned
from devstack.servers import free_port

_HOT_ROW = """
CREATE TABLE IF NOT EXISTS bench_hot_row (id int PRIMARY KEY, n bigint NOT NULL);
INSERT INTO bench_hot_row VALUES (1, 9223372036854775807)
ON CONFLICT (id) DO UPDATE SET n = 9223372036854775807;
"""


async def hot_row_rate(database_url: str, concurrency: int, seconds: float) -> float:
    """Guarded UPDATEs of one row per second through asyncpg: the stock row's ceiling."""
    pool = await asyncpg.create_pool(database_url, min_size=concurrency, max_size=concurrency)
    try:
        await pool.execute(_HOT_ROW)
        done = 0
        deadline = time.monotonic() + seconds

        async def worker() -> None:
            nonlocal done
            async with pool.acquire() as connection:
                update = await connection.prepare(
                    "UPDATE bench_hot_row SET n = n - 1 WHERE id = 1 AND n > 0"
                )
                while time.monotonic() < deadline:
                    await update.fetch()
                    done += 1

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return done / (time.monotonic() - started)
    finally:
        await pool.execute("DROP TABLE IF EXISTS bench_hot_row")
        await pool.close()


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
