"""The readiness probe over the real stores, cut short the way a shutdown cuts it."""

from __future__ import annotations

import asyncio
import contextlib
import gc

from aiohttp import web

from orchestrator.http.keys import MONGO_CLIENT, PG_POOL, REDIS
from orchestrator.http.readiness import store_status
from services.mongo_client import CurrentMongoClient


async def test_a_probe_cancelled_before_it_starts_leaves_no_store_call_unawaited(pg, mongo, redis):
    """The background store watch is cancelled at shutdown, maybe between starting its
    probes and their first step: no store call may be left made but never awaited."""
    app = web.Application()
    app[PG_POOL], app[REDIS] = pg, redis
    app[MONGO_CLIENT] = CurrentMongoClient(mongo.client, mongo.name)
    assert await store_status(app) == {"postgresql": True, "mongodb": True, "redis": True}

    probing = asyncio.ensure_future(store_status(app))
    await asyncio.sleep(0)  # one turn: the probes are made, none has run yet
    probing.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await probing
    del probing
    # A coroutine collected unawaited warns, and the suite makes every warning an error.
    gc.collect()
