"""The app factory: settings in, a ready aiohttp application out. Nothing runs at import."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from orchestrator import bootstrap, recovery
from orchestrator.errors import error_middleware
from orchestrator.keys import AUDITOR, COUPONS, MONGO_CLIENT, PG_POOL, RECOVERER, REDIS, SETTINGS
from orchestrator.routes import setup_routes
from orchestrator.settings import Settings


async def _postgres(app: web.Application) -> AsyncIterator[None]:
    async with bootstrap.postgres_pool(app[SETTINGS]) as pool:
        app[PG_POOL] = pool
        yield


async def _mongo(app: web.Application) -> AsyncIterator[None]:
    async with bootstrap.mongo_client(app[SETTINGS]) as client:
        app[MONGO_CLIENT] = client
        yield


async def _redis(app: web.Application) -> AsyncIterator[None]:
    async with bootstrap.redis_client(app[SETTINGS]) as client:
        app[REDIS] = client
        yield


async def _service(app: web.Application) -> AsyncIterator[None]:
    stores = bootstrap.Stores(app[PG_POOL], app[MONGO_CLIENT], app[REDIS])
    components = bootstrap.build(app[SETTINGS], stores)
    app[COUPONS] = components.coupons
    app[RECOVERER] = components.recoverer
    app[AUDITOR] = components.auditor
    yield


async def _recovery(app: web.Application) -> AsyncIterator[None]:
    """Every gateway recovers stuck sagas in the background; leases keep them apart."""
    task = asyncio.create_task(
        recovery.run_forever(app[RECOVERER], app[AUDITOR], app[SETTINGS].recovery_interval_seconds)
    )
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def create_app(settings: Settings) -> web.Application:
    app = web.Application(client_max_size=settings.max_body_bytes, middlewares=[error_middleware])
    app[SETTINGS] = settings
    app.cleanup_ctx.extend([_postgres, _mongo, _redis, _service, _recovery])
    setup_routes(app)
    return app
