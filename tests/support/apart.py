"""Stores a test keeps to itself, so no other gateway of the session touches its sagas.

Every gateway recovers stuck sagas in the background, from the saga log it is given and
against its own stores. A test that stops or hangs a store, waits for its sagas to end,
or counts who recovered what, keeps its saga log under a Redis key prefix of its own; a
test that stops MongoDB runs a FerretDB of its own too.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import redis.asyncio as aioredis

from devstack.servers import Server, free_port, start_ferretdb
from orchestrator.bootstrap import redis_client, redis_saga_log
from orchestrator.settings import Settings
from services.redis_keys import RedisKeys
from services.saga_log import RedisSagaLog
from tests.support.settings import changed


@dataclass(frozen=True)
class Apart:
    settings: Settings  # the test's settings, saga log moved under a key prefix of its own
    saga_log: RedisSagaLog
    redis: aioredis.Redis  # for what the adapter does not show (owners)
    keys: RedisKeys  # the saga log's keys


@asynccontextmanager
async def saga_log_apart(settings: Settings) -> AsyncIterator[Apart]:
    """`settings` with a saga log of the test's own: a new key prefix in the same Redis.

    Its gateways settle nobody's abandoned holds: the holds of every test live in the one
    PostgreSQL, and a gateway reading another saga log would take them all for abandoned.
    """
    keys = own_keys()
    apart = changed(settings, {"redis_key_prefix": keys.prefix, "hold_settle_seconds": 3600.0})
    async with redis_client(apart) as client:
        yield Apart(apart, redis_saga_log(apart, client), client, keys)
        await forget_saga_log(client, keys)


async def forget_saga_log(client: aioredis.Redis, keys: RedisKeys) -> int:
    """Delete every key under the prefix, as a Redis that lost its data would (for this
    saga log only). Returns how many there were."""
    found = [key async for key in client.scan_iter(match=f"{keys.prefix}*")]
    if found:
        await client.delete(*found)
    return len(found)


def own_keys() -> RedisKeys:
    """Keys under a prefix no other test uses."""
    return RedisKeys(f"test-{uuid.uuid4().hex[:12]}:")


class StoppableFerretDB:
    """A FerretDB on a PostgreSQL database of its own, stopped and started on one port."""

    def __init__(self, root: Path, postgres_server_url: str, database: str) -> None:
        self._root = root
        self._postgres = postgres_server_url
        self._database = database
        self._server: Server | None = None
        self.port = free_port()
        self.url = f"mongodb://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Start it (again), with the data it had. Off the event loop: clients keep going."""
        # It dies with the thread that spawned it (PR_SET_PDEATHSIG): an executor thread,
        # which lives as long as the test session's event loop.
        self._server = await asyncio.to_thread(
            start_ferretdb, self._root, self._postgres, database=self._database, port=self.port
        )

    async def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer would: every connection drops at once.

        (On SIGTERM FerretDB drains for seconds, serving the connections it has.)
        """
        if self._server is not None:
            self._server.process.kill()
            await asyncio.to_thread(self._server.process.wait)
            self._server = None

    async def stop(self) -> None:
        """SIGTERM, as an orchestrator stopping the container would."""
        if self._server is not None:
            await asyncio.to_thread(self._server.stop)
            self._server = None


@asynccontextmanager
async def postgres_database_apart(database_url: str) -> AsyncIterator[str]:
    """The URL of a new database on `database_url`'s server, dropped after: its holds are
    the test's alone, so its gateways may settle abandoned holds without touching others'."""
    database = f"coupons_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{database}"')
        try:
            yield urlunsplit(urlsplit(database_url)._replace(path=f"/{database}"))
        finally:
            await admin.execute(f'DROP DATABASE "{database}" WITH (FORCE)')
    finally:
        await admin.close()


@asynccontextmanager
async def ferretdb_apart(database_url: str, root: Path) -> AsyncIterator[StoppableFerretDB]:
    """A running FerretDB whose data lives in a new database of `database_url`'s server."""
    server_url = urlunsplit(urlsplit(database_url)._replace(path="", query=""))
    database = f"ferretdb_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{database}"')
        ferretdb = StoppableFerretDB(root, server_url, database)
        try:
            await ferretdb.start()
            yield ferretdb
        finally:
            await ferretdb.stop()
            await admin.execute(f'DROP DATABASE "{database}" WITH (FORCE)')
    finally:
        await admin.close()
