"""Running bench's own comparison servers: forked aiohttp + uvloop workers sharing a port
(as the gateway's do), started by bench as a child process it waits for and stops."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import signal
import sys
from collections.abc import AsyncIterator, Callable

import aiohttp
import uvloop
from aiohttp import web


def serve(app: web.Application, port: int) -> None:
    web.run_app(
        app,
        host="127.0.0.1",
        port=port,
        reuse_port=True,
        access_log=None,
        print=None,
        loop=uvloop.new_event_loop(),
    )


def run_workers(target: Callable[..., None], args: tuple[object, ...], workers: int) -> None:
    """Fork `workers` processes running `target(*args)`; SIGTERM stops them all."""
    context = multiprocessing.get_context("fork")
    processes = [context.Process(target=target, args=args) for _ in range(workers)]
    for process in processes:
        process.start()

    def stop(signum: int, _frame: object) -> None:
        for process in processes:
            if process.is_alive():
                process.terminate()

    signal.signal(signal.SIGTERM, stop)
    for process in processes:
        process.join()


@contextlib.asynccontextmanager
async def spawned(module: str, port: int, *args: str) -> AsyncIterator[tuple[str, int]]:
    """`python -m module --port PORT ...` until it answers /health; yield (base URL, pid)."""
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        *("--port", str(port), *args),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        await _wait_up(base, module)
        yield base, server.pid
    finally:
        server.terminate()
        await server.wait()


async def _wait_up(base: str, module: str) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(300):
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"{base}/health") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise SystemExit(f"{module} did not start")
