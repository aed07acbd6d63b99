"""The single-store floor: what a one-database service does per claim, on the gateway's
own stack (aiohttp, uvloop, asyncpg, the same workers and PostgreSQL pool size), so a
run can say what the saga costs against it.

One PostgreSQL transaction per claim: insert the claim under a unique (user, coupon)
index, then the guarded decrement; no row decremented rolls the insert back. It speaks
the part of the contract bench uses (create, claim, read a coupon), so the same
scenario and the same correctness check run against it. Its tables are its own
(`bench_single_store_*`): it never touches the service's.

`python -m bench.single_store --port P --database-url URL [--workers N]`
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator
from datetime import UTC
from typing import Any

import asyncpg
import orjson
from aiohttp import web

from bench.serving import run_workers, serve

POOL_SIZE = 16  # the gateway's PG_POOL_SIZE default, per process like the gateway's
COUPONS, CLAIMS = "bench_single_store_coupons", "bench_single_store_claims"
_TABLES = f"""
CREATE TABLE IF NOT EXISTS {COUPONS} (
    name text PRIMARY KEY, amount int NOT NULL, remaining int NOT NULL
);
CREATE TABLE IF NOT EXISTS {CLAIMS} (
    user_id text NOT NULL, coupon_name text NOT NULL, claimed_at timestamptz NOT NULL,
    UNIQUE (user_id, coupon_name)
);
"""
_INSERT_CLAIM = f"INSERT INTO {CLAIMS} VALUES ($1, $2, now()) RETURNING claimed_at"
_DECREMENT = (
    f"UPDATE {COUPONS} SET remaining = remaining - 1 WHERE name = $1 AND remaining > 0 RETURNING 1"
)
POOL = web.AppKey("pool", asyncpg.Pool)


class _NoUnitTaken(Exception):
    """The guarded decrement found no unit: the transaction rolls back the insert."""


def _answer(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def _error(status: int, code: str) -> web.Response:
    return _answer({"error": code, "message": code.replace("_", " ")}, status)


async def claim(request: web.Request) -> web.Response:
    body = orjson.loads(await request.read())
    user, coupon = body["user_id"], body["coupon_name"]
    async with request.app[POOL].acquire() as connection:
        try:
            async with connection.transaction():
                claimed_at = await connection.fetchval(_INSERT_CLAIM, user, coupon)
                if await connection.fetchval(_DECREMENT, coupon) is None:
                    raise _NoUnitTaken
        except asyncpg.UniqueViolationError:
            return _error(409, "already_claimed")
        except _NoUnitTaken:
            exists = await connection.fetchval(f"SELECT 1 FROM {COUPONS} WHERE name = $1", coupon)
            return _error(409, "out_of_stock") if exists else _error(404, "coupon_not_found")
    at = claimed_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return _answer({"user_id": user, "coupon_name": coupon, "claimed_at": at})


async def create(request: web.Request) -> web.Response:
    body = orjson.loads(await request.read())
    name, amount = body["name"], body["amount"]
    inserted = await request.app[POOL].fetchval(
        f"INSERT INTO {COUPONS} VALUES ($1, $2, $2) ON CONFLICT DO NOTHING RETURNING 1",
        name,
        amount,
    )
    if inserted is None:
        return _error(409, "coupon_exists")
    return _answer(
        {"name": name, "amount": amount, "remaining_amount": amount, "claimed_by": []}, 201
    )


async def read(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    pool = request.app[POOL]
    row = await pool.fetchrow(f"SELECT amount, remaining FROM {COUPONS} WHERE name = $1", name)
    if row is None:
        return _error(404, "coupon_not_found")
    users = await pool.fetch(
        f"SELECT user_id FROM {CLAIMS} WHERE coupon_name = $1 ORDER BY claimed_at", name
    )
    return _answer(
        {
            "name": name,
            "amount": row["amount"],
            "remaining_amount": row["remaining"],
            "claimed_by": [user["user_id"] for user in users],
        }
    )


async def health(request: web.Request) -> web.Response:
    return _answer({"status": "ok"})


def _app(database_url: str) -> web.Application:
    app = web.Application()

    async def pool(app: web.Application) -> AsyncIterator[None]:
        app[POOL] = await asyncpg.create_pool(database_url, min_size=POOL_SIZE, max_size=POOL_SIZE)
        yield
        await app[POOL].close()

    app.cleanup_ctx.append(pool)
    app.router.add_post("/api/coupons/claim", claim)
    app.router.add_post("/api/coupons", create)
    app.router.add_get("/api/coupons/{name}", read)
    app.router.add_get("/health", health)
    return app


def _serve(port: int, database_url: str) -> None:
    serve(_app(database_url), port)


async def _prepare(database_url: str) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(_TABLES)
    finally:
        await connection.close()


async def forget(database_url: str, coupon: str) -> None:
    """Delete one run's coupon and claims, so the tables stay small across runs."""
    connection = await asyncpg.connect(database_url)
    try:
        async with connection.transaction():
            await connection.execute(f"DELETE FROM {CLAIMS} WHERE coupon_name = $1", coupon)
            await connection.execute(f"DELETE FROM {COUPONS} WHERE name = $1", coupon)
    finally:
        await connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.single_store")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    asyncio.run(_prepare(args.database_url))
    run_workers(_serve, (args.port, args.database_url), args.workers)


if __name__ == "__main__":
    main()
