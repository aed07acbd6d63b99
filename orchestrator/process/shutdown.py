"""A graceful stop on SIGTERM: drain, stop listening, finish what is in progress, close.

While draining the gateway still answers every request, but /ready says 503 (so a load
balancer moves new traffic away) and each connection is closed after its answer. Then
the listener closes and aiohttp waits up to the grace period for requests in progress;
the stores' pools close last. A claim in progress therefore ends completed or
compensated, never half-done for recovery to clean up.

Every step of that is bounded, but the last is not ours: the event loop cancels what is
left and waits for all of it, and a task that swallows every cancellation (a wedged
PyMongo client's abandoned wait, issue 21) would keep the process alive for good. So
SIGTERM also starts a clock, off the loop: a process still there at its stop deadline
says so in one line and exits.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading

from aiohttp import web

from orchestrator.settings import Settings

log = logging.getLogger(__name__)

DRAINING = web.AppKey("draining", asyncio.Event)

# Above the stop's own bounds, for a busy machine.
STOP_MARGIN_SECONDS = 5.0
EXIT_PAST_DEADLINE = 1


def stop_deadline_seconds(settings: Settings) -> float:
    """How long after SIGTERM a process may take to stop: the drain, the grace, the
    sagas already answered finishing (`CouponService.close`), each store's close, and a
    margin."""
    return (
        settings.shutdown_drain_seconds
        + settings.shutdown_grace_seconds
        + settings.saga_retry_seconds
        + settings.step_timeout_seconds
        + 3 * settings.store_timeout_seconds
        + STOP_MARGIN_SECONDS
    )


def draining(app: web.Application) -> bool:
    return DRAINING in app and app[DRAINING].is_set()


def stop_gracefully_on_sigterm(app: web.Application, settings: Settings) -> None:
    app[DRAINING] = asyncio.Event()
    drain_seconds = settings.shutdown_drain_seconds

    async def install(app: web.Application) -> None:
        loop = asyncio.get_running_loop()

        def begin() -> None:
            if app[DRAINING].is_set():
                return
            log.info("SIGTERM: draining for %.1fs, then stopping", drain_seconds)
            app[DRAINING].set()
            _exit_at(stop_deadline_seconds(settings))
            loop.call_later(drain_seconds, _stop)

        loop.add_signal_handler(signal.SIGTERM, begin)

    app.on_startup.append(install)


def _stop() -> None:
    # A SystemExit: it leaves the event loop, and run_app then runs the graceful cleanup.
    raise web.GracefulExit()


def _exit_at(deadline_seconds: float) -> None:
    """A daemon thread's timer: it does not keep a process that stopped in time."""
    timer = threading.Timer(deadline_seconds, _exit_now, args=(deadline_seconds,))
    timer.daemon = True
    timer.start()


def _exit_now(deadline_seconds: float) -> None:
    log.error(
        "still stopping %.0fs after SIGTERM (a task does not end when cancelled: a wedged "
        "store client?); exiting now",
        deadline_seconds,
    )
    logging.shutdown()
    os._exit(EXIT_PAST_DEADLINE)
