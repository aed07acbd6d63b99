"""The HA stack's folder, and what a killed earlier run left behind.

Each run works in a fresh folder `coupon-ha-*` (on /dev/shm when there is one: etcd
syncs its log on every write, and a busy disk there makes it miss heartbeats, which
Patroni would take for a lost leader). The folder names the process that owns it; a
folder whose owner is gone is a leftover: every process whose command line names the
folder (etcd's, PostgreSQL's data dir, Patroni's and Redis's config files, FerretDB's
state dir) is killed with its children, and the folder deleted. Folders of runs still
going (another test session, another working tree) are left alone.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from devstack.ha.proctable import kill_all, mentioning, start_time

PREFIX = "coupon-ha-"
_OWNER = "owner"
_UNNAMED_GRACE_SECONDS = 60


def parent() -> Path:
    """Where every run's folder is made."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK):
        return shm
    return Path(tempfile.gettempdir())


def _owner_alive(root: Path) -> bool:
    try:
        pid, started = (int(part) for part in (root / _OWNER).read_text().split())
    except (OSError, ValueError):
        # Killed before it wrote the file, or just made by a run about to write it.
        return _age(root) < _UNNAMED_GRACE_SECONDS
    return start_time(pid) == started


def _age(root: Path) -> float:
    try:
        return time.time() - root.stat().st_mtime
    except OSError:
        return 0.0


def end(root: Path) -> None:
    """Kill whatever still runs from `root` and delete it."""
    kill_all(mentioning(f"{root}/"))  # a path inside it: never another folder's
    shutil.rmtree(root, ignore_errors=True)


def remove_leftovers() -> list[Path]:
    """End the runs whose owner died without cleaning up; the folders they had."""
    stale = [root for root in parent().glob(f"{PREFIX}*") if not _owner_alive(root)]
    for root in stale:
        end(root)
    return stale


def new_root() -> Path:
    """A fresh folder owned by this process, after clearing earlier runs' leftovers."""
    remove_leftovers()
    root = Path(tempfile.mkdtemp(prefix=PREFIX, dir=parent()))
    root.chmod(0o755)  # the postgres user must reach its data dirs inside
    (root / _OWNER).write_text(f"{os.getpid()} {start_time(os.getpid())}\n")
    return root
