"""The gateway stops in bounded time and cleanly, also when a store hangs at that moment."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from devstack.servers import free_port
from orchestrator.http.app import create_app
from tests.support.proxy import CuttableProxy, through

SHUTDOWN_GUARD_SECONDS = 60.0  # "bounded": far above the store timeout a close may wait


@pytest.fixture(params=["database_url", "mongo_url", "redis_url"])
async def store_proxy(request, settings) -> AsyncIterator[tuple[str, CuttableProxy]]:
    """(the settings field of a store, a proxy in front of that store)."""
    proxy = CuttableProxy.for_url(getattr(settings, request.param))
    await proxy.start()
    yield request.param, proxy
    await proxy.close()


async def test_a_store_that_hangs_at_shutdown_does_not_stop_the_shutdown(settings, store_proxy):
    """Every pooled connection is open when the store stops answering: a graceful close
    can never finish, so the gateway drops those connections and stops without error."""
    store, proxy = store_proxy
    runner = web.AppRunner(create_app(through(settings, **{store: proxy})), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", free_port()).start()

    await proxy.hang()
    async with asyncio.timeout(SHUTDOWN_GUARD_SECONDS):
        await runner.cleanup()  # PostgreSQL: raised asyncpg's TimeoutError before the fix
