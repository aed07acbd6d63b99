"""The saga log's Redis connections: one pool, to the server REDIS_URL names, or, with
REDIS_SENTINELS, to the master the sentinels name (after a failover, to the new one).

Either way a command past the pool's size waits for a free connection instead of
failing, and a dropped connection is retried a few times quickly; a store that stays
away is a 503.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from redis.asyncio.connection import (
    AbstractConnection,
    BlockingConnectionPool,
    ConnectionPool,
    SSLConnection,
    parse_url,
)
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import RedisError

from orchestrator.settings import Settings
from orchestrator.store_addresses import sentinel_addresses

# How often a Sentinel pool asks which node is the master, besides when it connects. A
# switchover (SENTINEL FAILOVER) leaves the old master up and taking writes until the
# sentinels tell it to replicate the new one, seconds later; it then drops its data for
# the new master's, and every write it took meanwhile is lost.
MASTER_CHECK_SECONDS = 1.0


class BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """redis-py's Sentinel pool, blocking past its size as the plain one does.

    Each connection it makes asks the sentinels for the master first. One of a demoted
    master that refuses a write (READONLY) is dropped and the command retried on a new
    one (redis-py's SentinelManagedConnection); learning of a new master drops the idle
    connections to the old one, and the others as they come back.
    """

    def __init__(self, service_name: str, sentinel_manager: Sentinel, **options: Any) -> None:
        super().__init__(service_name, sentinel_manager, **options)  # type: ignore[no-untyped-call]
        self._asking = asyncio.Lock()

    async def get_master_address(self) -> Any:
        # One question at a time: a pool opened in full (the warm-up) then keeps one
        # connection to a sentinel, not one per data connection.
        async with self._asking:
            return await super().get_master_address()  # type: ignore[no-untyped-call]

    async def follow_the_master(self, every_seconds: float) -> None:
        """Until cancelled: ask the sentinels which node is the master, so a switchover
        moves the connections within `every_seconds` of the sentinels knowing of it."""
        while True:
            await asyncio.sleep(every_seconds)
            with contextlib.suppress(RedisError, OSError):  # the next round asks again
                await self.get_master_address()

    async def release(self, connection: AbstractConnection) -> None:
        # redis-py's asyncio pool keeps a connection that was in use when it learnt of the
        # new master: it would go on reading from the old master, a replica now, until a
        # write is refused there.
        address = getattr(connection, "host", None), getattr(connection, "port", None)
        if self.master_address is not None and address != self.master_address:
            await connection.disconnect()
        await super().release(connection)


@asynccontextmanager
async def redis_pool(settings: Settings, timeout_seconds: float) -> AsyncIterator[ConnectionPool]:
    """The pool, closed at the end (and the sentinels' connections with it)."""
    options: dict[str, Any] = {
        "max_connections": settings.redis_pool_size,
        "timeout": timeout_seconds,  # for a free connection
        "socket_timeout": timeout_seconds,
        "socket_connect_timeout": timeout_seconds,
        "decode_responses": True,
        # A few quick retries of a dropped connection; a store that stays down is a 503.
        "retry": Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.2), retries=2),
    }
    if not settings.redis_sentinels:
        pool = BlockingConnectionPool.from_url(settings.redis_url, **options)
        try:
            yield pool
        finally:
            await pool.aclose()
        return
    sentinels = Sentinel(  # type: ignore[no-untyped-call]
        sentinel_addresses(settings.redis_sentinels),
        sentinel_kwargs={
            "socket_timeout": timeout_seconds,
            "socket_connect_timeout": timeout_seconds,
        },
    )
    pool = BlockingSentinelPool(
        settings.redis_sentinel_master,
        sentinels,
        **data_node_options(settings.redis_url),
        **options,
    )
    following = asyncio.create_task(pool.follow_the_master(MASTER_CHECK_SECONDS))
    try:
        yield pool
    finally:
        following.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await following
        await pool.aclose()
        await sentinels.aclose()


def data_node_options(redis_url: str) -> dict[str, Any]:
    """What REDIS_URL says of the data nodes when the sentinels say where they are: the
    user, password, db and TLS (rediss:// and its ssl_* options), not the host."""
    options: dict[str, Any] = dict(parse_url(redis_url))
    options.pop("host", None)
    options.pop("port", None)
    if options.pop("connection_class", None) is SSLConnection:
        options["ssl"] = True  # the Sentinel pool then makes TLS connections of its own kind
    return options
