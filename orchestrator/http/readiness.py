"""Readiness: does each store answer a trivial request right now?"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web

from orchestrator.http.keys import MONGO_CLIENT, PG_POOL, REDIS

# Short: a probe that waits long tells the load balancer nothing it can act on.
PROBE_TIMEOUT_SECONDS = 2.0


async def _answers(probe: Callable[[], Awaitable[object]]) -> bool:
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
            await probe()
        return True
    except Exception:  # whatever the driver raises, the store did not answer
        return False


async def store_status(app: web.Application) -> dict[str, bool]:
    """Each store by name, True if it answered; all three probed at once."""
    # Each store call is made inside its own probe: one made before a cancellation
    # reaches it would be left never awaited.
    probes: dict[str, Callable[[], Awaitable[object]]] = {
        "postgresql": lambda: app[PG_POOL].fetchval("SELECT 1"),
        "mongodb": lambda: app[MONGO_CLIENT].ping(),
        "redis": lambda: app[REDIS].ping(),
    }
    answers = await asyncio.gather(*(_answers(probe) for probe in probes.values()))
    return dict(zip(probes, answers, strict=True))
