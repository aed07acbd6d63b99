"""`coupon-service`: run the gateway, in WORKERS processes sharing the port."""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
from multiprocessing.sharedctypes import Synchronized
from typing import TYPE_CHECKING

import uvloop
from aiohttp import web

from orchestrator.http.framing import answer_framing_errors_in_json
from orchestrator.logs import configure_logging
from orchestrator.process import budget
from orchestrator.process.listening import (
    CannotListen,
    announce_when_bound,
    cannot_listen,
    check_can_listen,
    is_bind_error,
)
from orchestrator.process.metrics_dir import metrics_directory
from orchestrator.process.shutdown import stop_gracefully_on_sigterm
from orchestrator.settings import Settings, SettingsError, load_settings, misspelt_in_env_file
from sagas.errors import StoreNotSetUp, StoreUnavailable
from sagas.version import package_version

if TYPE_CHECKING:  # the engine imports prometheus_client: see main()
    from orchestrator.saga.engine import AfterStep

log = logging.getLogger(__name__)


def serve(
    settings: Settings,
    *,
    reuse_port: bool = False,
    told: Synchronized[int] | None = None,
    after_step: AfterStep | None = None,
) -> None:
    """`told`: shared by workers, so a failed start that stops them all is said once.
    `after_step`: a test's fault hook (tests/support/faulty_gateway.py)."""
    # After PROMETHEUS_MULTIPROC_DIR is decided: these import prometheus_client.
    from orchestrator.http.app import create_app
    from orchestrator.saga.engine import describe

    configure_logging(settings.log_level)
    answer_framing_errors_in_json()
    app = create_app(settings, after_step=after_step)
    stop_gracefully_on_sigterm(app, settings)
    try:
        web.run_app(
            app,
            host=settings.host,
            port=settings.port,
            reuse_port=reuse_port,
            access_log=None,
            print=announce_when_bound(settings.host, settings.port),
            loop=uvloop.new_event_loop(),
            handle_signals=False,  # SIGTERM is ours (above); SIGINT still stops at once
            shutdown_timeout=settings.shutdown_grace_seconds,
        )
    except (StoreUnavailable, StoreNotSetUp, OSError) as error:
        if isinstance(error, OSError) and is_bind_error(error):
            _say_once(told, str(cannot_listen(settings.host, settings.port, error)))
        else:
            _say_once(told, f"stopping: {describe(error)}")
        sys.exit(1)
    except Exception as error:  # a bug: still one JSON line, its stack in the "error" field
        _say_once(told, f"stopping: {describe(error)}", with_stack=True)
        sys.exit(1)


def _say_once(told: Synchronized[int] | None, line: str, *, with_stack: bool = False) -> None:
    if told is not None:
        with told.get_lock():
            if told.value:
                return
            told.value = 1
    log.error("%s", line, exc_info=with_stack)


def _run_workers(settings: Settings, count: int, after_step: AfterStep | None) -> int:
    """Fork worker processes bound with SO_REUSEPORT; stop all when one stops."""
    context = multiprocessing.get_context("fork")  # no event loop is running: safe
    told = context.Value("b", 0)
    workers = [
        context.Process(
            target=serve,
            args=(settings,),
            kwargs={"reuse_port": True, "told": told, "after_step": after_step},
            name=f"worker-{n}",
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
    ended = multiprocessing.connection.wait([worker.sentinel for worker in workers])
    for worker in workers:
        if worker.sentinel not in ended:
            continue
        # Its sentinel closes a moment before it can be reaped: wait for its exit code.
        worker.join()
        # One that exited said why (serve); one killed by a signal could not.
        if worker.exitcode is not None and worker.exitcode < 0:
            _say_once(told, f"{worker.name} was killed by signal {-worker.exitcode}: stopping")
    stop(signal.SIGTERM, None)
    for worker in workers:
        worker.join()
    return max(abs(worker.exitcode or 0) for worker in workers)


def _checked_start(settings: Settings, count: int) -> Settings:
    """Each worker's settings, once every store answers and the budget fits; otherwise
    one line naming what to change, and exit 1."""
    from orchestrator.process import preflight  # after PROMETHEUS_MULTIPROC_DIR is decided

    try:
        each = budget.for_each_worker(settings, count)
        asyncio.run(preflight.check_stores(settings))
    except StoreUnavailable:
        sys.exit(1)  # bootstrap.wait_for has said which store did not answer
    except (budget.BudgetTooSmall, StoreNotSetUp) as error:
        log.error("not starting: %s", error)
        sys.exit(1)
    log.info(
        "%d workers, each with %d PostgreSQL, %d MongoDB (and up to %d monitoring) and %d "
        "Redis connections, %d sagas at once",
        count,
        each.pg_pool_size,
        each.mongo_pool_size,
        budget.MONGO_MONITOR_CONNECTIONS,
        each.redis_pool_size,
        each.max_concurrent_sagas,
    )
    return each


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    """--help and --version answer here, before any setting is read or store touched."""
    parser = argparse.ArgumentParser(
        prog="coupon-service",
        description="The flash-sale coupon gateway: HTTP API on HOST:PORT, WORKERS processes.",
        epilog="Settings come from the environment and ./.env (docs/CONFIGURATION.md).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, *, after_step: AfterStep | None = None) -> None:
    """`after_step`: run in every worker after each saga step's action; only the fault
    tests' entry point passes one (tests/support/faulty_gateway.py)."""
    parse_arguments(argv)
    for warning in misspelt_in_env_file():
        print(f"coupon-service: warning: {warning}", file=sys.stderr)
    try:
        settings = load_settings()
    except SettingsError as error:
        for line in str(error).splitlines():
            print(f"coupon-service: {line}", file=sys.stderr)
        sys.exit(2)
    configure_logging(settings.log_level)
    count = budget.worker_count(settings)
    try:
        check_can_listen(settings.host, settings.port, reuse_port=count != 1)
    except CannotListen as error:
        log.error("%s", error)
        sys.exit(1)
    if count == 1:
        serve(_checked_start(settings, count), after_step=after_step)
        return
    # Metrics shared by the workers: prometheus_client reads this when it is first imported,
    # so nothing this module imports may import it (orchestrator.metrics comes with the app).
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:  # the operator's, to keep and to clean
        sys.exit(_run_workers(_checked_start(settings, count), count, after_step))
    with metrics_directory() as directory:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
        code = _run_workers(_checked_start(settings, count), count, after_step)
    sys.exit(code)


if __name__ == "__main__":
    main()
