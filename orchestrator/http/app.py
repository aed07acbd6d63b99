"""The app factory: settings in, a ready aiohttp application out. Nothing runs at import."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from aiohttp import web

from orchestrator import bootstrap, metrics
from orchestrator.console.reads import Console
from orchestrator.http.errors import error_middleware
from orchestrator.http.keys import (
    AUDITOR,
    CONSOLE,
    COUPONS,
    MONGO_CLIENT,
    PG_POOL,
    RECOVERER,
    REDIS,
    SETTINGS,
    STORE_STATES,
)
from orchestrator.http.limits import IN_PROGRESS, concurrency_limit_middleware
from orchestrator.http.observe import observe_middleware
from orchestrator.http.readiness import store_status
from orchestrator.http.routes import setup_routes
from orchestrator.mongo_renewal import MongoRenewal
from orchestrator.saga import recovery
from orchestrator.saga.engine import AfterStep
from orchestrator.settings import Settings
from orchestrator.store_watch import StoreStates

POOL_SAMPLE_SECONDS = 5.0
STORE_PROBE_SECONDS = 5.0


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


def _service(
    after_step: AfterStep | None,
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def service(app: web.Application) -> AsyncIterator[None]:
        stores = bootstrap.Stores(app[PG_POOL], app[MONGO_CLIENT], app[REDIS])
        components = bootstrap.build(app[SETTINGS], stores, after_step=after_step)
        await components.warm_up(redis_connections=app[SETTINGS].max_concurrent_sagas)
        app[COUPONS] = components.coupons
        app[RECOVERER] = components.recoverer
        app[AUDITOR] = components.auditor
        app[CONSOLE] = Console(
            components.saga_log,
            components.recoverer,
            components.auditor,
            components.inventory,
            components.claims,
            claim_totals=metrics.claim_totals,
        )
        # A failover may come with no claim to ask for the reconciliation (no reserve or
        # confirm refused for it): each recovery interval looks too, for one query's cost.
        watching = components.reconciler.watch(app[SETTINGS].recovery_interval_seconds)
        async with _running(watching):
            yield
        await components.close()

    return service


@contextlib.asynccontextmanager
async def _running(work: Coroutine[Any, Any, None]) -> AsyncIterator[None]:
    """`work` runs in the background while the app serves, and is cancelled after."""
    task = asyncio.create_task(work)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _recovery(app: web.Application) -> AsyncIterator[None]:
    """Every gateway recovers stuck sagas in the background; leases keep them apart."""
    recovering = recovery.run_forever(
        app[RECOVERER], app[AUDITOR], app[STORE_STATES], app[SETTINGS].recovery_interval_seconds
    )
    async with _running(recovering):
        yield


async def _pool_sampler(app: web.Application) -> AsyncIterator[None]:
    """Every few seconds, this worker's PostgreSQL pool into the metrics."""

    async def sample() -> None:
        pool = app[PG_POOL]
        while True:
            metrics.sample_postgres_pool(pool.get_size(), pool.get_idle_size(), pool.get_max_size())
            await asyncio.sleep(POOL_SAMPLE_SECONDS)

    async with _running(sample()):
        yield


async def _store_watch(app: web.Application) -> AsyncIterator[None]:
    """Every few seconds, whether each store answers: the `store_up` metric, a log line
    when that changes, and a MongoDB client that stays broken replaced."""
    settings = app[SETTINGS]
    renewal = MongoRenewal(
        app[MONGO_CLIENT],
        new_client=lambda: bootstrap.new_mongo_client(settings),
        lone_client=lambda: bootstrap.lone_mongo_client(settings),
        close_seconds=settings.store_timeout_seconds,
    )

    async def probe() -> None:
        while True:
            status = await store_status(app)
            for store, up in status.items():
                if up:
                    app[STORE_STATES].available(store)
                else:
                    app[STORE_STATES].unavailable(store, "it did not answer the readiness probe")
            await renewal.probed(status["mongodb"])
            await asyncio.sleep(STORE_PROBE_SECONDS)

    async with _running(probe()):
        yield
    await renewal.close()


def create_app(settings: Settings, *, after_step: AfterStep | None = None) -> web.Application:
    """`after_step`: a test's fault hook, run after each saga step's action (engine.py)."""
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[observe_middleware, concurrency_limit_middleware, error_middleware],
        handler_args={
            "max_line_size": settings.max_header_bytes,
            "max_field_size": settings.max_header_bytes,
            "max_headers": settings.max_headers,
        },
    )
    app[SETTINGS] = settings
    app[IN_PROGRESS] = [0]
    app[STORE_STATES] = StoreStates()
    app.cleanup_ctx.extend(
        [_postgres, _mongo, _redis, _service(after_step), _recovery, _pool_sampler, _store_watch]
    )
    setup_routes(app)
    return app
