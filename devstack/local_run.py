"""`python -m devstack run` (`make run`): the gateway on local stores kept in `.run/`.

Stores named by DATABASE_URL / MONGO_URL / REDIS_URL (environment or .env) are used as
they are; the others are started here, their data and ports kept in `.run/` of the
working directory, so a restart finds the coupons it had. On Ctrl-C or SIGTERM the
gateway stops first (gracefully: a claim in progress finishes), then the stores started
here. A second Ctrl-C stops the gateway at once.

The gateway listens on loopback unless HOST (environment or .env) says otherwise: a
development gateway, with no ADMIN_TOKEN as a rule, is not for the network to reach.

The gateway runs as its own process (`python -m orchestrator`): the service imports
nothing of this package, so development tooling never ships inside the production entry
point.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from devstack.homes import KeptHome
from devstack.processes import StackError, dies_with_parent
from devstack.stack import StackUrls, running_stack
from orchestrator.process.listening import CannotListen, check_can_listen
from orchestrator.settings import SettingsError, load_settings

if TYPE_CHECKING:
    from orchestrator.settings import Settings

RUN_DIR = ".run"
DEV_HOST = "127.0.0.1"  # unless HOST says otherwise
_URL_SETTINGS = ("database_url", "mongo_url", "redis_url")


class _StopRequests:
    """Counts SIGINT and SIGTERM instead of dying of them: the stores must be stopped last."""

    def __init__(self) -> None:
        self.count = 0
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._count)

    def _count(self, _signum: int, _frame: object) -> None:
        self.count += 1


def main(argv: list[str]) -> int:
    """`python -m devstack run`: the settings as the gateway reads them, then the run."""
    if argv:
        print(f"usage: python -m devstack run\n\n{__doc__}", file=sys.stderr)
        return 0 if argv[0] in ("-h", "--help") else 2
    try:  # the gateway it starts warns of a misspelt name in .env
        settings = load_settings()
    except SettingsError as error:
        for line in str(error).splitlines():
            print(f"coupon-service: {line}", file=sys.stderr)
        return 2
    return run_on_local_stores(settings)


def run_on_local_stores(settings: Settings, run_dir: Path = Path(RUN_DIR)) -> int:
    """Run the gateway until it stops or is told to; its exit code (0 when told to stop)."""
    if "host" not in settings.model_fields_set:
        settings = settings.model_copy(update={"host": DEV_HOST})
    try:  # before any store starts: the gateway's port taken is the likeliest failure
        check_can_listen(settings.host, settings.port, reuse_port=settings.workers != 1)
    except CannotListen as error:
        print(f"coupon-service: {error}", file=sys.stderr)
        return 1
    stop = _StopRequests()
    given = {
        name.upper(): str(getattr(settings, name))
        for name in _URL_SETTINGS
        if name in settings.model_fields_set
    }
    try:
        with running_stack(given, KeptHome(run_dir.resolve())) as urls:
            if stop.count:
                return 0
            return _run_gateway(settings, urls, run_dir, stop)
    except StackError as error:
        print(f"coupon-service: {str(error).splitlines()[0]}", file=sys.stderr)
        return 1


def _run_gateway(settings: Settings, urls: StackUrls, run_dir: Path, stop: _StopRequests) -> int:
    gateway = subprocess.Popen(
        [sys.executable, "-m", "orchestrator"],
        env={**os.environ, **urls.as_env(), "HOST": settings.host},
        start_new_session=True,  # Ctrl-C reaches it through us, as a graceful SIGTERM
        preexec_fn=dies_with_parent(signal.SIGTERM),
    )
    announced = False
    while gateway.poll() is None and not stop.count:
        if not announced and _accepts(settings.host, settings.port):
            _announce(settings, urls, run_dir)
            announced = True
        time.sleep(0.1)
    if gateway.poll() is None:
        print("coupon-service: stopping the gateway, then the stores started here", file=sys.stderr)
        gateway.terminate()
        while gateway.poll() is None:
            if stop.count > 1:
                gateway.send_signal(signal.SIGINT)  # asked twice: at once
            time.sleep(0.1)
    code = gateway.returncode
    return code if code >= 0 else 128 - code


def _reachable_host(host: str) -> str:
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


def _wider(host: str) -> str:
    reachable = _reachable_host(host)
    return "" if reachable == host else f" (HOST={host}: listening on every address)"


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((_reachable_host(host), port), timeout=0.5):
            return True
    except OSError:
        return False


def _announce(settings: Settings, urls: StackUrls, run_dir: Path) -> None:
    started = ", ".join(urls.started) or "none"
    env = " ".join(f"{name}={shlex.quote(value)}" for name, value in urls.as_env().items())
    for line in (
        f"API on http://{_reachable_host(settings.host)}:{settings.port}{_wider(settings.host)}",
        f"stores started here: {started} (data in {run_dir.resolve()})",
        f"coupon-saga on these stores: env {env} {shlex.quote(_coupon_saga())} list",
    ):
        print(f"coupon-service: {line}", file=sys.stderr, flush=True)


def _coupon_saga() -> str:
    """The venv's `coupon-saga` as a path a shell here runs with no venv on PATH."""
    beside = Path(sys.executable).with_name("coupon-saga")  # not resolved: the venv's own
    if not beside.is_file():
        return "coupon-saga"
    here = Path.cwd()
    return str(beside.relative_to(here) if beside.is_relative_to(here) else beside)
