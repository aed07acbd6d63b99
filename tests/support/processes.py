"""Looking at processes from outside: who descends from whom, who still runs, who connected."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process, None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the name may hold spaces and parens
    return fields[0], int(fields[1])


def running(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"


def blocked_signals(pid: int) -> set[int]:
    """The signals a process blocks (they wait until it unblocks them), empty once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return set()
    mask = int(
        next(line.split()[1] for line in status.splitlines() if line.startswith("SigBlk")), 16
    )
    return {bit + 1 for bit in range(64) if mask >> bit & 1}


def descendants(pid: int) -> set[int]:
    """Every process below `pid` in the process tree, now."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            parents[int(entry.name)] = stat[1]
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def command_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def mentioning(*needles: str) -> list[str]:
    """Command lines of running processes that contain any of `needles`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            if any(needle in command for needle in needles) and running(int(entry.name)):
                found.append(command)
    return found


class Listener:
    """A port something listens on and never answers: a store's stand-in that counts callers."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.socket.setblocking(False)
        self.port: int = self.socket.getsockname()[1]

    def was_called(self) -> bool:
        try:
            connection, _ = self.socket.accept()
        except BlockingIOError:
            return False
        connection.close()
        return True


@contextlib.contextmanager
def listeners(count: int) -> Iterator[list[Listener]]:
    made = [Listener() for _ in range(count)]
    try:
        yield made
    finally:
        for listener in made:
            listener.socket.close()


def resident_bytes(pid: int) -> int:
    """The resident memory of the processes below `pid` (a gateway's workers), together."""
    total = 0
    for child in descendants(pid):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            for line in Path(f"/proc/{child}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total
