"""`coupon-service`: run the gateway, in WORKERS processes sharing the port."""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys

import uvloop
from aiohttp import web

from orchestrator.app import create_app
from orchestrator.logs import configure_logging
from orchestrator.settings import Settings

log = logging.getLogger(__name__)


def serve(settings: Settings, *, reuse_port: bool = False) -> None:
    configure_logging(settings.log_level)
    log.info("listening on %s:%d", settings.host, settings.port)
    web.run_app(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        reuse_port=reuse_port,
        access_log=None,
        print=None,
        loop=uvloop.new_event_loop(),
    )


def _run_workers(settings: Settings) -> int:
    """Fork worker processes bound with SO_REUSEPORT; stop all when one stops."""
    context = multiprocessing.get_context("fork")  # before any event loop exists: safe
    count = settings.workers or os.cpu_count() or 1
    workers = [
        context.Process(
            target=serve, args=(settings,), kwargs={"reuse_port": True}, name=f"worker-{n}"
        )
        for n in range(count)
    ]
    for worker in workers:
        worker.start()

    def stop(signum: int, _frame: object) -> None:
        for worker in workers:
            if worker.is_alive():
                worker.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    multiprocessing.connection.wait([worker.sentinel for worker in workers])
    stop(signal.SIGTERM, None)
    for worker in workers:
        worker.join()
    return max(abs(worker.exitcode or 0) for worker in workers)


def main() -> None:
    settings = Settings()
    configure_logging(settings.log_level)
    if settings.workers == 1:
        serve(settings)
    else:
        sys.exit(_run_workers(settings))


if __name__ == "__main__":
    main()
