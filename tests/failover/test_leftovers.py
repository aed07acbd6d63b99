"""A start removes what a killed earlier run left behind, and nothing of a live run."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.ha import leftovers
from devstack.ha.proctable import is_live, start_time


def run_folder(owner_pid: int, owner_start: int | None) -> Path:
    root = Path(tempfile.mkdtemp(prefix=leftovers.PREFIX, dir=leftovers.parent()))
    (root / "owner").write_text(f"{owner_pid} {owner_start}\n")
    return root


def server_in(root: Path) -> subprocess.Popen[bytes]:
    """A process naming the folder in its command line, as each server of a run does."""
    config = root / "server.conf"
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", str(config)])


@pytest.fixture
def dead_pid() -> int:
    ended = subprocess.Popen(["true"])
    ended.wait()
    return ended.pid


@pytest.fixture
def live_run() -> Iterator[tuple[Path, subprocess.Popen[bytes]]]:
    root = run_folder(os.getpid(), start_time(os.getpid()))
    server = server_in(root)
    yield root, server
    leftovers.end(root)
    server.wait()


def test_a_dead_runs_folder_and_processes_are_removed(dead_pid: int) -> None:
    root = run_folder(dead_pid, 1)
    server = server_in(root)

    removed = leftovers.remove_leftovers()

    assert root in removed
    assert server.wait(timeout=30) == -9
    assert not root.exists()


def test_a_live_runs_folder_and_processes_are_left_alone(
    live_run: tuple[Path, subprocess.Popen[bytes]],
) -> None:
    root, server = live_run

    removed = leftovers.remove_leftovers()

    assert root not in removed
    assert root.exists()
    assert is_live(server.pid)
