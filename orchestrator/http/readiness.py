"""Readiness: does each store answer a trivial request right now?"""

from __future__ import annotations

from aiohttp import web

from orchestrator.bootstrap import Stores
from orchestrator.http.keys import MONGO_CLIENT, PG_POOL, REDIS

# Short: a probe that waits long tells the load balancer nothing it can act on.
PROBE_TIMEOUT_SECONDS = 2.0


async def store_status(app: web.Application) -> dict[str, bool]:
    """Each store by name, True if it answered; all three probed at once."""
    stores = Stores(app[PG_POOL], app[MONGO_CLIENT], app[REDIS])
    return await stores.answering(PROBE_TIMEOUT_SECONDS)
