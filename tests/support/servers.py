"""The app under test, as a real `coupon-service` process or in this process, both over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import ExitStack, asynccontextmanager, contextmanager
from pathlib import Path

from aiohttp import web

from devstack.servers import free_port
from orchestrator.http.app import create_app
from orchestrator.saga.engine import AfterStep
from orchestrator.settings import Settings
from tests.support.faulty_gateway import Fault

# The checkout: `python -m tests.support.faulty_gateway` imports from it, wherever pytest runs.
CHECKOUT = Path(__file__).resolve().parents[2]


def settings_env(settings: Settings) -> dict[str, str]:
    """The settings as the environment a process reads them from (unset ones left out)."""
    env = {}
    for key, value in settings.model_dump().items():
        if value is not None:
            secret = getattr(value, "get_secret_value", None)
            env[key.upper()] = secret() if secret else str(value)
    return env


_RUNNING: dict[str, subprocess.Popen[bytes]] = {}


def kill_9(base_url: str) -> None:
    """SIGKILL the gateway at `base_url` and all its worker processes, as a crash would."""
    process = _RUNNING[base_url]
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def process_group(base_url: str) -> int:
    """The process group of the gateway at `base_url`: its main process and its workers."""
    return _RUNNING[base_url].pid  # started as a session leader: group id == its pid


@contextmanager
def gateway_process(
    settings: Settings, log_path: Path, workers: int = 2, *, fault: Fault | None = None
) -> Iterator[str]:
    """Run the console script the Docker image runs; yield its base URL. With `fault`, the
    same gateway started through tests/support/faulty_gateway.py, which injects it."""
    with gateway_processes(settings, [log_path], workers, fault=fault) as (base_url,):
        yield base_url


@contextmanager
def gateway_processes(
    settings: Settings, log_paths: Sequence[Path], workers: int = 2, *, fault: Fault | None = None
) -> Iterator[list[str]]:
    """One gateway per log path, all started at once (none waits for another to be up)."""
    with ExitStack() as stack:
        started = [
            stack.enter_context(_spawned(settings, path, workers, fault)) for path in log_paths
        ]
        for base_url, path in zip(started, log_paths, strict=True):
            wait_healthy(base_url, _RUNNING[base_url], path)
        yield started


def _gateway_env(settings: Settings, port: int, workers: int) -> dict[str, str]:
    return {
        **os.environ,
        **settings_env(settings),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WORKERS": str(workers),
    }


def _gateway_command(fault: Fault | None) -> tuple[list[str], dict[str, str]]:
    """The command line and the environment it adds: the console script, or with `fault`
    the fault tests' entry point to the same gateway."""
    if fault is None:
        return [sys.executable, "-m", "orchestrator"], {}
    path = os.pathsep.join(filter(None, [str(CHECKOUT), os.environ.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "tests.support.faulty_gateway"]
    return command, {**fault.env(), "PYTHONPATH": path}


@contextmanager
def _spawned(
    settings: Settings, log_path: Path, workers: int, fault: Fault | None
) -> Iterator[str]:
    port = free_port()
    command, faulty_env = _gateway_command(fault)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command,
            env={**_gateway_env(settings, port, workers), **faulty_env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: kill_9 takes the workers too
        )
    base_url = f"http://127.0.0.1:{port}"
    _RUNNING[base_url] = process
    try:
        yield base_url
    finally:
        del _RUNNING[base_url]
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        # No worker may outlive its gateway: it would go on recovering other tests' sagas.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


def wait_healthy(base_url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 180  # many workers on a loaded host: a hang guard only
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"coupon-service exited:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{base_url}/health", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"coupon-service did not become healthy:\n{log_path.read_text()[-3000:]}")


@asynccontextmanager
async def app_in_process(
    settings: Settings, *, after_step: AfterStep | None = None
) -> AsyncIterator[str]:
    """The same app factory served from this event loop, for tests that reshape its stores
    (or, with `after_step`, act right after a saga step)."""
    runner = web.AppRunner(create_app(settings, after_step=after_step), access_log=None)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await asyncio.shield(runner.cleanup())


async def run_to_exit(
    settings: Settings, workers: int, port: int | None = None
) -> tuple[int, list[str]]:
    """Run `coupon-service` expecting it to stop by itself: its exit code and log lines."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "orchestrator",
        env=_gateway_env(settings, port or free_port(), workers),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), 120)  # a hang guard only
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode is not None
    return process.returncode, out.decode().splitlines()
