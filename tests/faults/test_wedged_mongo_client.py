"""A MongoDB client that stays broken while the server answers is replaced by a new one.

The cause found for issue 21 is gone, but a client wedged anyway (tests/support/wedge.py
makes one as it was found) must not cost a worker its claims until a restart: the store
watch notices it failing, a new client's ping answers, and a new client takes its place.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from devstack.servers import free_port
from orchestrator.http.app import create_app
from orchestrator.http.keys import MONGO_CLIENT
from tests.support.apart import saga_log_apart
from tests.support.api import claim, create
from tests.support.settings import changed
from tests.support.waiting import eventually
from tests.support.wedge import Wedge

# The watch probes every 5 s and replaces a client failing for 10 s; a failing /ready
# takes its 2 s probe timeout: far within this many polls.
REPLACED_GUARD_POLLS = 60


@pytest.fixture
async def served(settings) -> AsyncIterator[tuple[web.Application, str]]:
    """The app, served from this loop, with its state at hand (and a saga log of its own)."""
    async with saga_log_apart(settings) as apart:
        app = create_app(changed(apart.settings, {"store_timeout_seconds": 1.0}))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            yield app, f"http://127.0.0.1:{port}"
        finally:
            await runner.cleanup()


async def ready(http, base: str) -> bool:
    async with http.get(f"{base}/ready") as response:
        return response.status == 200


async def test_a_wedged_client_is_replaced_and_claims_stand_again(http, served, name, caplog):
    app, base = served
    await create(http, base, name, 10)
    wedged = app[MONGO_CLIENT].client
    wedge = await Wedge.of(wedged)
    try:
        caplog.set_level(logging.WARNING, logger="orchestrator.mongo_renewal")
        assert not await ready(http, base)

        await eventually(lambda: ready(http, base), tries=REPLACED_GUARD_POLLS)
        assert app[MONGO_CLIENT].client is not wedged
        assert (await claim(http, base, "after", name))[0] == 200
        (replaced,) = [r for r in caplog.records if r.name == "orchestrator.mongo_renewal"]
        assert "replaced this process's client" in replaced.getMessage()
    finally:
        await wedge.undo()
        await wedged.close()
