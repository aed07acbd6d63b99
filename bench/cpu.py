"""Whole-machine CPU over a run, split by role, read from /proc.

A role is a set of root processes found once (the gateway bench started, or whatever
listens on a store's port) and, at each sample, every live descendant of them. A
process's CPU is its utime + stime + cutime + cstime: summed over a tree of live
processes, that counts each process once, alive or exited and reaped inside the tree
(a PostgreSQL backend that exits is charged to the postmaster's cutime). The load
generator is bench's own process, its own time only (its children are the stack's
servers). "other" is the machine's busy time (/proc/stat) less every role: on a shared
machine, other sessions' work too. The unit is the kernel's clock tick (10 ms).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")
_LISTEN = "0A"  # TCP state LISTEN in /proc/net/tcp


@dataclass(frozen=True)
class Process:
    pid: int
    ppid: int
    name: str
    own_ticks: int  # utime + stime
    tree_ticks: int  # own, plus the children it has reaped (cutime + cstime)


def processes() -> dict[int, Process]:
    """Every process visible in /proc now, by pid."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            text = stat.read_text()
            # The name may hold spaces and parentheses: it ends at the last ')'.
            name = text[text.index("(") + 1 : text.rindex(")")]
            rest = text[text.rindex(")") + 2 :].split()
            utime, stime, cutime, cstime = (int(value) for value in rest[11:15])
            pid = int(stat.parent.name)
            found[pid] = Process(
                pid, int(rest[1]), name, utime + stime, utime + stime + cutime + cstime
            )
    return found


def machine_busy_ticks() -> int:
    """All CPUs' busy time since boot: everything but idle and iowait (guest is in user)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return user + nice + system + irq + softirq + steal


def load_average() -> tuple[float, float, float]:
    """The machine's run-queue averages over 1, 5 and 15 minutes: how busy it was."""
    one, five, fifteen = Path("/proc/loadavg").read_text().split()[:3]
    return float(one), float(five), float(fifteen)


def command_line(pid: int) -> list[str]:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    return []


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                columns = line.split()
                if columns[3] == _LISTEN and int(columns[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(columns[9])
    return inodes


def listeners(port: int) -> set[int]:
    """The processes holding a listening socket on `port` (those of this user: the rest
    cannot be looked into, so they are not found)."""
    sockets = {f"socket:[{inode}]" for inode in _listening_inodes(port)}
    found = set()
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        with contextlib.suppress(OSError):
            if any(os.readlink(fd) in sockets for fd in fd_dir.iterdir()):
                found.add(int(fd_dir.parent.name))
    return found


def url_port(url: str, default: int) -> int | None:
    with contextlib.suppress(ValueError):
        return urlsplit(url).port or default
    return None


def url_ports(url: str, default: int) -> list[int]:
    """Every port the URL names: one, or one per host of a multi-host PostgreSQL URL
    (`postgresql://h1:5432,h2:5433/db`, where urlsplit finds no single port)."""
    single = url_port(url, default)
    if single is not None:
        return [single]
    ports = []
    for host in urlsplit(url).netloc.rpartition("@")[2].split(","):
        _, _, port = host.rpartition(":")
        ports.append(int(port) if port.isdigit() else default)
    return ports


@dataclass(frozen=True)
class Part:
    """Processes `roots` and their descendants; only PostgreSQL backends of
    `backend_database` when it is set (FerretDB's share of its PostgreSQL)."""

    roots: frozenset[int]
    backend_database: str | None = None

    def members(self, table: dict[int, Process]) -> set[int]:
        tree = descendants(self.roots, table)
        if self.backend_database is None:
            return tree
        return {pid for pid in tree if _backend_database(pid) == self.backend_database}


@dataclass(frozen=True)
class Role:
    """A role's processes, and how they were found (or why not: then `parts` is empty)."""

    name: str
    parts: tuple[Part, ...]
    found: str
    own_only: bool = False  # the load generator: its own time, not its children's

    @property
    def is_found(self) -> bool:
        return bool(self.parts)

    def members(self, table: dict[int, Process]) -> set[int]:
        if self.own_only:
            return {pid for part in self.parts for pid in part.roots if pid in table}
        return set().union(*(part.members(table) for part in self.parts))


def not_found(name: str, why: str) -> Role:
    return Role(name, (), f"not found ({why})")


def descendants(roots: Iterable[int], table: dict[int, Process]) -> set[int]:
    children: dict[int, list[int]] = {}
    for process in table.values():
        children.setdefault(process.ppid, []).append(process.pid)
    found, stack = set(), [pid for pid in roots if pid in table]
    while stack:
        pid = stack.pop()
        if pid not in found:
            found.add(pid)
            stack.extend(children.get(pid, []))
    return found


def _backend_database(pid: int) -> str | None:
    """A PostgreSQL backend's database, from its title
    `postgres: [CLUSTER: ]USER DATABASE HOST ACTIVITY` (a one-string command line)."""
    argv = command_line(pid)
    words = argv[0].split() if len(argv) == 1 else []
    if not words or words[0] != "postgres:":
        return None
    words = words[2:] if len(words) > 1 and words[1].endswith(":") else words[1:]
    return words[1] if len(words) >= 3 else None


@dataclass(frozen=True)
class Sample:
    machine: int
    roles: dict[str, int]  # ticks by role name


def sample(roles: list[Role]) -> Sample:
    """Each role's ticks now. Roles are taken in order, a process counted in the first
    that claims it (FerretDB's backends go before PostgreSQL's)."""
    table = processes()
    taken: set[int] = set()
    ticks = {}
    for role in roles:
        members = role.members(table) - taken
        taken |= members
        ticks[role.name] = sum(
            table[pid].own_ticks if role.own_only else table[pid].tree_ticks for pid in members
        )
    return Sample(machine_busy_ticks(), ticks)


def usage(roles: list[Role], before: Sample, after: Sample) -> dict[str, float | None]:
    """CPU seconds by role between two samples; None for a role not found; with the
    machine's total and "other" (the machine less every role found)."""
    seconds: dict[str, float | None] = {}
    for role in roles:
        delta = after.roles[role.name] - before.roles[role.name]
        seconds[role.name] = delta / TICKS_PER_SECOND if role.is_found else None
    machine = (after.machine - before.machine) / TICKS_PER_SECOND
    accounted = sum(value for value in seconds.values() if value is not None)
    seconds["other"] = max(0.0, machine - accounted)
    seconds["machine"] = machine
    return seconds
