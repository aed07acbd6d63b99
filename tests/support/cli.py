"""`coupon-saga`, run as the console script an operator runs, against the test stores."""

from __future__ import annotations

import asyncio
import os
import sys

from orchestrator.settings import Settings
from tests.support.servers import settings_env


async def coupon_saga(settings: Settings, *args: str) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of `coupon-saga ARGS...`."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "orchestrator.cli",
        *args,
        env={**os.environ, **settings_env(settings)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def coupon_saga_to_a_closed_reader(settings: Settings, *args: str) -> tuple[int, str]:
    """Exit code and stderr of `coupon-saga ARGS... | head -0`, deterministically: its
    stdout is a pipe whose reader has closed before the tool writes a byte."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "orchestrator.cli",
            *args,
            env={**os.environ, **settings_env(settings)},
            stdout=write_end,
            stderr=asyncio.subprocess.PIPE,
        )
    finally:
        os.close(write_end)
    _, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, err.decode()
