"""Waiting for a state of the HA stack by polling it, never by sleeping a guessed time."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TypeVar

from devstack.processes import Server, StackError

T = TypeVar("T")

POLL_SECONDS = 0.1


def poll(
    what: str, check: Callable[[], T | None], *, timeout: float = 60.0, watch: Iterable[Server] = ()
) -> T:
    """The first truthy value `check` returns; a StackError naming `what` after `timeout`,
    or at once when a watched server exits (with the end of its log)."""
    watched = list(watch)
    deadline = time.monotonic() + timeout
    while True:
        for server in watched:
            if server.process.poll() is not None:
                raise StackError(
                    f"{what}: {server.name} exited with {server.process.returncode}; "
                    f"its log: {server.log_path}\n{_tail(server)}"
                )
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise StackError(f"{what}: not within {timeout:.0f} s")
        time.sleep(POLL_SECONDS)


def _tail(server: Server) -> str:
    try:
        return server.log_path.read_text(errors="replace")[-2000:]
    except OSError:
        return "(no log)"
