"""A run's folder and prefix, and what a killed earlier run left behind.

Each run gets a folder `coupon-cluster-<id>` (next to the HA stack's) naming its owner
process, and the prefix `cl<id>` for everything it makes in the kernel: namespaces,
links, cgroups. A folder whose owner is gone is a leftover: its namespaces' processes
are killed, its namespaces, links and cgroups deleted, whatever still runs from the
folder (HAProxy) killed, and the folder removed. Runs still going are left alone.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from devstack.cluster import cgroups, network
from devstack.ha.leftovers import parent
from devstack.ha.proctable import kill_all, mentioning, start_time

FOLDER_PREFIX = "coupon-cluster-"
_OWNER = "owner"


def prefix_of(root: Path) -> str:
    return "cl" + root.name.removeprefix(FOLDER_PREFIX)


def new_root() -> Path:
    """A fresh folder owned by this process, after clearing dead runs' leftovers."""
    remove_leftovers()
    root = parent() / f"{FOLDER_PREFIX}{uuid.uuid4().hex[:6]}"
    root.mkdir(mode=0o755)
    (root / _OWNER).write_text(f"{os.getpid()} {start_time(os.getpid())}\n")
    return root


def end(root: Path) -> None:
    """Remove everything the run of `root` made, whatever state it is in."""
    prefix = prefix_of(root)
    network.remove(prefix)
    kill_all(mentioning(f"{root}/"))
    cgroups.remove(prefix)
    shutil.rmtree(root, ignore_errors=True)


def _owner_alive(root: Path) -> bool:
    try:
        pid, started = (int(part) for part in (root / _OWNER).read_text().split())
    except (OSError, ValueError):
        return True  # being made right now: its owner writes the file next
    return start_time(pid) == started


def remove_leftovers() -> list[Path]:
    stale = [root for root in parent().glob(f"{FOLDER_PREFIX}*") if not _owner_alive(root)]
    for root in stale:
        end(root)
    return stale
