"""A CPU quota per host, as cgroup v1's `cpu` controller gives one (optional: where the
controller is not mounted writable, hosts run unbounded and `available()` says so)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

CPU = Path("/sys/fs/cgroup/cpu")
_PERIOD_US = 100_000


def available() -> bool:
    return (CPU / "cgroup.procs").exists() and os.access(CPU, os.W_OK)


def create(name: str, cpus: float) -> Path:
    """A cgroup allowing `cpus` CPUs' worth of time (0.5: half of one)."""
    group = CPU / name
    group.mkdir(exist_ok=True)
    (group / "cpu.cfs_period_us").write_text(str(_PERIOD_US))
    (group / "cpu.cfs_quota_us").write_text(str(int(cpus * _PERIOD_US)))
    return group


def enter(group: Path, pid: int) -> None:
    (group / "cgroup.procs").write_text(str(pid))


def remove(prefix: str) -> None:
    """Delete the cgroups named `prefix*`, moving what still runs in them to the root."""
    if not CPU.is_dir():
        return
    for group in CPU.glob(f"{prefix}*"):
        with contextlib.suppress(OSError):
            for pid in (group / "cgroup.procs").read_text().split():
                with contextlib.suppress(OSError):
                    (CPU / "cgroup.procs").write_text(pid)
            group.rmdir()
