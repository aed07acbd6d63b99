"""A graceful stop on SIGTERM: drain, stop listening, finish what is in progress, close.

While draining the gateway still answers every request, but /ready says 503 (so a load
balancer moves new traffic away) and each connection is closed after its answer. Then
the listener closes and aiohttp waits up to the grace period for requests in progress;
the stores' pools close last. A claim in progress therefore ends completed or
compensated, never half-done for recovery to clean up.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

log = logging.getLogger(__name__)

DRAINING = web.AppKey("draining", asyncio.Event)


def draining(app: web.Application) -> bool:
    return DRAINING in app and app[DRAINING].is_set()


def stop_gracefully_on_sigterm(app: web.Application, drain_seconds: float) -> None:
    app[DRAINING] = asyncio.Event()

    async def install(app: web.Application) -> None:
        loop = asyncio.get_running_loop()

        def begin() -> None:
            if app[DRAINING].is_set():
                return
            log.info("SIGTERM: draining for %.1fs, then stopping", drain_seconds)
            app[DRAINING].set()
            loop.call_later(drain_seconds, _stop)

        loop.add_signal_handler(signal.SIGTERM, begin)

    app.on_startup.append(install)


def _stop() -> None:
    # A SystemExit: it leaves the event loop, and run_app then runs the graceful cleanup.
    raise web.GracefulExit()
