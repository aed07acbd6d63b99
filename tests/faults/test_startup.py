"""Start-up: the gateway waits, with backoff and a log line per try, for a store that is
not up yet, and gives up with the store's name once the wait is over."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest

from sagas.errors import StoreUnavailable
from tests.support.proxy import through
from tests.support.servers import app_in_process
from tests.support.settings import changed
from tests.support.waiting import eventually


def waiting_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("waiting for")]


async def test_the_gateway_comes_up_once_a_late_store_does(http, settings, pg_proxy, caplog):
    caplog.set_level(logging.INFO, logger="orchestrator.bootstrap")
    await pg_proxy.cut()
    late = changed(through(settings, database_url=pg_proxy), {"startup_wait_seconds": 60.0})
    async with contextlib.AsyncExitStack() as stack:
        starting = asyncio.ensure_future(stack.enter_async_context(app_in_process(late)))

        async def said_it_waits() -> bool:  # it has tried, been refused and said so
            return bool(waiting_lines(caplog))

        await eventually(said_it_waits)
        assert waiting_lines(caplog)[0].startswith("waiting for postgresql (try 1)")
        assert not starting.done()

        await pg_proxy.restore()
        base = await asyncio.wait_for(starting, timeout=60)
        async with http.get(f"{base}/ready") as response:
            assert response.status == 200
    assert "postgresql is ready" in [r.getMessage() for r in caplog.records]


async def test_the_gateway_gives_up_naming_the_store(settings, pg_proxy, caplog):
    await pg_proxy.cut()
    never = changed(through(settings, database_url=pg_proxy), {"startup_wait_seconds": 1.0})
    with pytest.raises(StoreUnavailable, match="postgresql"):
        async with app_in_process(never):
            pass
    assert any("postgresql did not answer" in r.getMessage() for r in caplog.records)
