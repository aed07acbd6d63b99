"""A store that answers but refuses us mid-sale: a role's rights revoked, the old primary
of a failover turned read-only, Redis unable to persist or turned replica. Each claim is
a 503 that took nothing, never a 500, and the log says why in one line."""

from __future__ import annotations

import logging
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import redis.asyncio as aioredis

from devstack.processes import free_port
from devstack.servers import Server
from orchestrator.settings import Settings
from tests.support.apart import saga_log_apart
from tests.support.api import claim, create
from tests.support.invariants import assert_conserved
from tests.support.servers import app_in_process
from tests.support.settings import changed
from tests.support.waiting import eventually

# A store that refuses a step for good is given up on after a second, not ten.
SHORT_RETRIES = {
    "saga_retry_seconds": 1.0,
    "store_timeout_seconds": 0.5,
    "step_timeout_seconds": 1.5,
}

Refusal = Callable[[], Awaitable[None]]


@pytest.fixture
async def role(pg: asyncpg.Pool) -> AsyncIterator[str]:
    """A login role of its own with just what the gateway needs on the stock's tables."""
    name = f"claimer_{uuid.uuid4().hex[:12]}"
    # A password too: a server that asks for one (the hosted CI's postgres:16) gets it.
    await pg.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{name}'")
    await pg.execute(f"GRANT USAGE ON SCHEMA public TO {name}")
    tables = "coupons, holds, inventory_lineage"
    await pg.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {tables} TO {name}")
    yield name
    await pg.execute(f"DROP OWNED BY {name}")
    await pg.execute(f"DROP ROLE {name}")


def as_role(url: str, role: str) -> str:
    """`url` logging in as `role` (its password is its name)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{role}:{role}@{parts.hostname}:{parts.port}"))


def on_redis(settings: Settings, url: str) -> Settings:
    """The saga log on the test's own Redis. Its gateway settles nobody's abandoned holds:
    every test's holds live in the one PostgreSQL."""
    return changed(settings, {**SHORT_RETRIES, "redis_url": url, "hold_settle_seconds": 3600.0})


async def claim_refused(http, settings: Settings, pg, mongo, coupon: str, refuse: Refusal):
    """Create the coupon (3 units), let `refuse` turn the store against the gateway, claim:
    a 503 that took nothing. Returns the answer's body."""
    async with app_in_process(settings) as base:
        await create(http, base, coupon, 3)
        await refuse()
        status, body = await claim(http, base, "alice", coupon)

    assert (status, body["error"]) == (503, "unavailable"), body
    assert await pg.fetchval("SELECT remaining_amount FROM coupons WHERE name = $1", coupon) == 3
    live = "SELECT count(*) FROM holds WHERE coupon_name = $1 AND status <> 'released'"
    assert await pg.fetchval(live, coupon) == 0
    assert await mongo.claims.count_documents({"coupon_name": coupon}) == 0
    await assert_conserved(pg, coupon)
    return body


async def test_postgresql_revoking_the_gateways_rights(
    http, settings, pg, mongo, role, name, caplog
):
    async def revoke() -> None:
        await pg.execute(f"REVOKE UPDATE ON coupons FROM {role}")  # an operator's slip

    async with saga_log_apart(settings) as apart:
        refused = changed(apart.settings, {"database_url": as_role(settings.database_url, role)})
        with caplog.at_level(logging.WARNING):
            body = await claim_refused(http, refused, pg, mongo, name, revoke)

    assert "permission denied" not in body["message"]  # the driver's words stay in the log
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("permission denied" in line and "grant" in line for line in logged), logged


async def test_postgresql_turned_read_only_under_the_gateway(http, settings, pg, mongo, role, name):
    """The old primary of a failover: its sessions are ended, and new ones are read-only."""

    async def fail_over() -> None:
        await pg.execute(f"ALTER ROLE {role} SET default_transaction_read_only = on")
        await pg.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", role
        )

    async with saga_log_apart(settings) as apart:
        refused = changed(
            apart.settings,
            {**SHORT_RETRIES, "database_url": as_role(settings.database_url, role)},
        )
        await claim_refused(http, refused, pg, mongo, name, fail_over)


async def test_redis_turned_replica_under_the_gateway(http, settings, pg, mongo, own_redis, name):
    async def fail_over() -> None:
        async with aioredis.Redis.from_url(own_redis.url) as client:
            await client.replicaof("127.0.0.1", free_port())  # a primary that never answers

    await claim_refused(http, on_redis(settings, own_redis.url), pg, mongo, name, fail_over)


async def test_redis_that_cannot_persist_refusing_writes(
    http, settings, pg, mongo, own_redis, name
):
    """stop-writes-on-bgsave-error: a snapshot failed (its directory is gone)."""

    async def lose_the_disk() -> None:
        shutil.rmtree(redis_dir(own_redis))
        async with aioredis.Redis.from_url(own_redis.url, decode_responses=True) as client:
            await client.config_set("save", "3600 1")
            await client.bgsave()

            async def snapshot_failed() -> bool:
                persistence = await client.info("persistence")
                return persistence["rdb_last_bgsave_status"] == "err"

            await eventually(snapshot_failed)

    await claim_refused(http, on_redis(settings, own_redis.url), pg, mongo, name, lose_the_disk)


async def test_redis_revoking_the_gateways_commands(http, settings, pg, mongo, own_redis, name):
    async with aioredis.Redis.from_url(own_redis.url) as client:
        await client.acl_setuser(
            "claimer",
            enabled=True,
            passwords=["+secret"],
            keys=["*"],
            channels=["*"],
            commands=["+@all"],
        )

        async def revoke() -> None:
            await client.acl_setuser("claimer", commands=["-@scripting"])

        url = own_redis.url.replace("redis://", "redis://claimer:secret@")
        await claim_refused(http, on_redis(settings, url), pg, mongo, name, revoke)


def redis_dir(server: Server) -> Path:
    return server.log_path.parent / "redis"
