"""The Makefile as a newcomer uses it: `make help`, and pip only when the pins changed."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def make(*args: str) -> str:
    done = subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def test_help_lists_every_target():
    phony = re.search(r"^\.PHONY: (.*)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert phony is not None
    listed = {line.split()[1] for line in make("help").splitlines()}
    assert listed == set(phony.group(1).split())


def test_help_aligns_every_description_however_long_the_target():
    lines = make("help").splitlines()
    columns = {len(line) - len(line.split(maxsplit=2)[2]) for line in lines}
    longest = max(len(line.split()[1]) for line in lines)
    assert columns == {len("  make ") + longest + 2}


@pytest.mark.parametrize("target", ["run", "stack"])
def test_running_installs_the_runtime_only_and_only_once(tmp_path, target):
    venv = f"VENV={tmp_path}"
    assert "scripts/install-deps --runtime\n" in make("-n", target, venv)
    assert "scripts/install-deps\n" not in make("-n", target, venv)

    (tmp_path / ".installed-runtime").touch()  # newer than the pins: installed from them
    assert "install-deps" not in make("-n", target, venv)

    for pin in ("requirements.lock", "pyproject.toml"):  # as if just changed (-W)
        assert "install-deps --runtime" in make("-n", target, venv, "-W", pin)


def test_testing_installs_everything():
    assert "scripts/install-deps\n" in make("-n", "test", "VENV=/nonexistent")
