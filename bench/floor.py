"""The floor a claim is compared with: a bare aiohttp + uvloop server whose every request
does one guarded UPDATE of a hot row and one Redis SET, and nothing else.

`python -m bench.floor --port P --database-url URL --redis-url URL [--workers N]`
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
from collections.abc import AsyncIterator

import asyncpg
import redis.asyncio as aioredis
from aiohttp import web

from bench.serving import run_workers, serve

_TABLE = """
CREATE TABLE IF NOT EXISTS bench_floor (id int PRIMARY KEY, n bigint NOT NULL);
INSERT INTO bench_floor VALUES (1, 9223372036854775807) ON CONFLICT (id) DO NOTHING;
"""
POOL = web.AppKey("pool", asyncpg.Pool)
REDIS = web.AppKey("redis", aioredis.Redis)


def _app(database_url: str, redis_url: str) -> web.Application:
    app = web.Application()
    counter = itertools.count()

    async def stores(app: web.Application) -> AsyncIterator[None]:
        # The gateway's PostgreSQL pool size, so both queue on the hot row alike.
        app[POOL] = await asyncpg.create_pool(database_url, min_size=1, max_size=16)
        app[REDIS] = aioredis.Redis(
            connection_pool=aioredis.BlockingConnectionPool.from_url(redis_url, max_connections=64)
        )
        yield
        await app[REDIS].aclose()
        await app[POOL].close()

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        await request.app[POOL].execute("UPDATE bench_floor SET n = n - 1 WHERE id = 1 AND n > 0")
        await request.app[REDIS].set(f"bench:floor:{os.getpid()}:{next(counter)}", "1", ex=60)
        return web.json_response({"ok": True})

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app.cleanup_ctx.append(stores)
    app.router.add_post("/floor", handle)
    app.router.add_get("/health", health)
    return app


def _serve(port: int, database_url: str, redis_url: str) -> None:
    serve(_app(database_url, redis_url), port)


async def _prepare(database_url: str) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(_TABLE)
    finally:
        await connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.floor")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    asyncio.run(_prepare(args.database_url))
    run_workers(_serve, (args.port, args.database_url, args.redis_url), args.workers)


if __name__ == "__main__":
    main()
