"""The processes a stack started, found in /proc: by a path in their command line, and
the children of those (PostgreSQL's backends rename themselves, but stay its children)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    state: str
    start_time: int  # clock ticks after boot: tells a pid from a later one that reuses it
    cmdline: str


def _read(pid_dir: Path) -> Proc | None:
    try:
        stat = (pid_dir / "stat").read_text()
        cmdline = (pid_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:  # gone meanwhile
        return None
    # The command name in parentheses may hold spaces and parentheses: split after the last.
    fields = stat[stat.rindex(")") + 2 :].split()
    return Proc(int(pid_dir.name), int(fields[1]), fields[0], int(fields[19]), cmdline.strip())


def processes() -> list[Proc]:
    found = (_read(entry) for entry in Path("/proc").iterdir() if entry.name.isdigit())
    return [proc for proc in found if proc is not None]


def start_time(pid: int) -> int | None:
    proc = _read(Path(f"/proc/{pid}"))
    return proc.start_time if proc else None


def with_descendants(roots: set[int], table: list[Proc]) -> set[int]:
    found = set(roots)
    grew = True
    while grew:
        children = {proc.pid for proc in table if proc.ppid in found} - found
        found |= children
        grew = bool(children)
    return found


def mentioning(text: str) -> set[int]:
    """Live processes whose command line holds `text`, with all their descendants."""
    table = processes()
    named = {proc.pid for proc in table if text in proc.cmdline and proc.pid != os.getpid()}
    return with_descendants(named, table)


def is_live(pid: int) -> bool:
    proc = _read(Path(f"/proc/{pid}"))
    return proc is not None and proc.state != "Z"  # a zombie has ended, only unreaped


def kill_all(pids: set[int], *, timeout: float = 15.0) -> None:
    """SIGKILL each (a stopped one too) and poll until none runs."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    wait_gone(pids, timeout=timeout)


def wait_gone(pids: set[int], *, timeout: float = 15.0) -> bool:
    """Poll until none of `pids` runs, at most `timeout`; whether none does."""
    deadline = time.monotonic() + timeout
    while any(is_live(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


class Frozen:
    """Processes stopped with SIGSTOP (they hold their sockets and do nothing), to be
    continued together: a stopped process also holds up its server's shutdown."""

    def __init__(self) -> None:
        self._pids: set[int] = set()

    def freeze(self, pids: set[int]) -> None:
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        self._pids |= pids

    def thaw(self) -> None:
        """SIGCONT every one still there."""
        for pid in self._pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self._pids.clear()
