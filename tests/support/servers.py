"""The app under test, as a real `coupon-service` process or in this process, both over HTTP."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

from aiohttp import web

from devstack.servers import free_port
from orchestrator.app import create_app
from orchestrator.settings import Settings


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


@contextmanager
def gateway_process(settings: Settings, log_path: Path, workers: int = 2) -> Iterator[str]:
    """Run the console script the Docker image runs; yield its base URL."""
    port = free_port()
    env = {
        **os.environ,
        **settings_env(settings),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WORKERS": str(workers),
    }
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "orchestrator"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: kill_9 takes the workers too
        )
    base_url = f"http://127.0.0.1:{port}"
    _RUNNING[base_url] = process
    try:
        _wait_healthy(base_url, process, log_path)
        yield base_url
    finally:
        del _RUNNING[base_url]
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_healthy(base_url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 60
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
async def app_in_process(settings: Settings) -> AsyncIterator[str]:
    """The same app factory served from this event loop, for tests that reshape its stores."""
    runner = web.AppRunner(create_app(settings), access_log=None)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await asyncio.shield(runner.cleanup())
