"""The gateway stops in bounded time and cleanly, also when a store hangs at that moment."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from devstack.servers import free_port
from orchestrator.http.app import create_app
from orchestrator.process.shutdown import stop_deadline_seconds
from tests.support.apart import saga_log_apart
from tests.support.api import claim, create
from tests.support.faulty_gateway import Fault
from tests.support.logs import json_lines
from tests.support.processes import running
from tests.support.proxy import CuttableProxy, through
from tests.support.servers import gateway_process, process_group
from tests.support.settings import changed
from tests.support.waiting import eventually

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


# Short, so the bound is reached soon; and a gateway whose own start takes a while on a busy
# machine is given that much more.
QUICK_STOP = {"shutdown_drain_seconds": 0.5, "shutdown_grace_seconds": 2.0}
PROCESS_EXIT_SLACK_SECONDS = 10.0


async def mongodb_away(base: str) -> bool:
    """In some worker: each request on a new connection, so it may reach either."""
    connector = aiohttp.TCPConnector(force_close=True)
    async with (
        aiohttp.ClientSession(connector=connector) as http,
        http.get(f"{base}/ready") as response,
    ):
        return response.status == 503 and (await response.json())["stores"]["mongodb"] != "ok"


async def test_sigterm_stops_a_gateway_whose_mongodb_client_is_wedged(
    http, settings, tmp_path, name
):
    """Issue 21: SIGTERM did not stop a gateway with a wedged MongoDB client in 60 s (its
    grace was 30 s). Its close never finishes, and the waits it abandoned swallow every
    cancellation, so the loop's last cancel-everything-and-wait never ends: each process
    still stops by its stop deadline, saying why."""
    async with saga_log_apart(settings) as apart:
        quick = changed(apart.settings, QUICK_STOP)
        log_path = tmp_path / "gateway.log"
        wedging = Fault.wedge_mongo_after("record")
        with gateway_process(quick, log_path, workers=2, fault=wedging) as base:
            await create(http, base, name, 5)
            assert (await claim(http, base, "first", name))[0] == 200
            await eventually(lambda: mongodb_away(base))

            gateway = process_group(base)
            os.kill(gateway, signal.SIGTERM)

            async def stopped() -> bool:
                return not running(gateway)

            polls = (stop_deadline_seconds(quick) + PROCESS_EXIT_SLACK_SECONDS) / 0.05
            await eventually(stopped, tries=int(polls))
        said = [line["message"] for line in json_lines(log_path)]
        assert any("still stopping" in message for message in said), said[-20:]
