"""Which metrics directories a start removes: only those whose gateway is gone."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from orchestrator.process.metrics_dir import PREFIX, metrics_directory, remove_abandoned


def test_a_directory_whose_lock_is_held_stays_one_whose_lock_is_free_goes(tmp_path):
    live, abandoned = tmp_path / f"{PREFIX}live", tmp_path / f"{PREFIX}abandoned"
    for path in (live, abandoned):
        path.mkdir()
        (path / "gateway.lock").touch()
    held = os.open(live / "gateway.lock", os.O_RDWR)  # another open file: another holder
    try:
        fcntl.flock(held, fcntl.LOCK_EX)
        remove_abandoned(tmp_path)
    finally:
        os.close(held)

    assert live.exists()
    assert not abandoned.exists()


def test_a_directory_without_a_lock_file_is_not_ours_to_judge(tmp_path):
    unknown = tmp_path / f"{PREFIX}unknown"
    unknown.mkdir()

    remove_abandoned(tmp_path)

    assert unknown.exists()


def test_a_gateways_directory_is_locked_while_it_runs_and_removed_after(tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    with metrics_directory() as directory:
        path = Path(directory)
        assert path.parent == tmp_path and path.name.startswith(PREFIX)
        remove_abandoned(tmp_path)  # another gateway starting meanwhile
        assert path.exists()
    assert list(tmp_path.iterdir()) == []
