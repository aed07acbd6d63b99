"""`coupon-service`: run the gateway, in WORKERS processes sharing the port."""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import sys
import tempfile

import uvloop
from aiohttp import web

from orchestrator.framing import answer_framing_errors_in_json
from orchestrator.logs import configure_logging
from orchestrator.settings import Settings
from orchestrator.shutdown import stop_gracefully_on_sigterm

log = logging.getLogger(__name__)


def serve(settings: Settings, *, reuse_port: bool = False) -> None:
    from orchestrator.app import create_app  # after PROMETHEUS_MULTIPROC_DIR is decided

    configure_logging(settings.log_level)
    answer_framing_errors_in_json()
    app = create_app(settings)
    stop_gracefully_on_sigterm(app, settings.shutdown_drain_seconds)
    log.info("listening on %s:%d", settings.host, settings.port)
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        reuse_port=reuse_port,
        access_log=None,
        print=None,
        loop=uvloop.new_event_loop(),
        handle_signals=False,  # SIGTERM is ours (above); SIGINT still stops at once
        shutdown_timeout=settings.shutdown_grace_seconds,
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
        return
    # Metrics shared by the workers: prometheus_client reads this when it is first imported,
    # so nothing this module imports may import it (orchestrator.metrics comes with the app).
    owned = "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    if owned:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="coupon-metrics-")
    try:
        code = _run_workers(settings)
    finally:
        if owned:
            shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
