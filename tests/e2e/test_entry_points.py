"""The console scripts as a user meets them: --help and --version, bad settings, the port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest

from devstack.servers import free_port
from orchestrator.settings import Settings
from tests.support.processes import Listener, listeners
from tests.support.servers import settings_env

SERVICE = [sys.executable, "-m", "orchestrator"]
SAGA_TOOL = [sys.executable, "-m", "orchestrator.cli"]


@pytest.fixture
def stand_in_stores() -> Iterator[tuple[list[Listener], dict[str, str]]]:
    """Stores that accept a connection and never answer, and the settings that name them."""
    with listeners(3) as (postgres, mongo, redis):
        env = {
            "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{postgres.port}/coupons",
            "MONGO_URL": f"mongodb://127.0.0.1:{mongo.port}",
            "REDIS_URL": f"redis://127.0.0.1:{redis.port}/0",
            # Today's code, if it starts anyway, gives up at once instead of waiting.
            "STARTUP_WAIT_SECONDS": "0",
            "STORE_TIMEOUT_SECONDS": "1",
            "HOST": "127.0.0.1",
            "PORT": str(free_port()),
        }
        yield [postgres, mongo, redis], env


def run(
    argv: list[str], env: dict[str, str], cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        env={**os.environ, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([*SERVICE, "--help"], "usage: coupon-service"),
        ([*SERVICE, "--version"], f"coupon-service {version('coupon-service')}"),
        ([*SAGA_TOOL, "--version"], f"coupon-saga {version('coupon-service')}"),
    ],
    ids=["service --help", "service --version", "saga --version"],
)
def test_help_and_version_answer_and_start_nothing(stand_in_stores, tmp_path, argv, expected):
    stores, env = stand_in_stores
    done = run(argv, env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert expected in done.stdout
    assert "listening" not in done.stdout + done.stderr
    assert not [store for store in stores if store.was_called()]


@pytest.mark.parametrize(
    ("setting", "value"), [("LOG_LEVEL", "verbose"), ("WORKERS", "-1"), ("PORT", "abc")]
)
def test_a_bad_setting_is_one_line_naming_it(stand_in_stores, tmp_path, setting, value):
    stores, env = stand_in_stores
    done = run(SERVICE, {**env, setting: value}, cwd=tmp_path)
    assert done.returncode != 0
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"coupon-service: {setting}={value} is not valid: ")
    assert "fix it in the environment or .env" in lines[0]
    assert "Traceback" not in done.stdout + done.stderr
    assert not [store for store in stores if store.was_called()]


def test_settings_that_do_not_fit_together_are_one_line_naming_the_rule(stand_in_stores, tmp_path):
    stores, env = stand_in_stores
    done = run(SERVICE, {**env, "STEP_TIMEOUT_SECONDS": "1"}, cwd=tmp_path)
    assert done.returncode != 0
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(
        "coupon-service: STEP_TIMEOUT_SECONDS must be at least STORE_TIMEOUT_SECONDS + 1"
    )
    assert "fix it in the environment or .env" in lines[0]
    assert not [store for store in stores if store.was_called()]


def test_a_misspelt_setting_in_the_env_file_is_warned(stand_in_stores, tmp_path):
    _, env = stand_in_stores
    (tmp_path / ".env").write_text("WORKER=3\nLOG_LEVEL=verbose\n")
    done = run(SERVICE, env, cwd=tmp_path)
    warnings = [s for s in done.stderr.splitlines() if s.startswith("coupon-service: warning:")]
    assert warnings == [
        "coupon-service: warning: .env sets WORKER, which is no setting "
        "(did you mean WORKERS?); it is ignored"
    ]


def _service_env(settings: Settings, port: int, workers: int) -> dict[str, str]:
    return {
        **settings_env(settings),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WORKERS": str(workers),
        "LOG_LEVEL": "info",
    }


def test_listening_is_logged_once_the_port_is_bound(settings, tmp_path):
    port = free_port()
    log_path = tmp_path / "gateway.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            SERVICE,
            env={**os.environ, **_service_env(settings, port, 1)},
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        for _ in range(1200):  # until it says so: poll its log
            if f"listening on 127.0.0.1:{port}" in log_path.read_text():
                break
            assert process.poll() is None, log_path.read_text()
            time.sleep(0.05)
        else:
            pytest.fail(f"never said it listens:\n{log_path.read_text()}")
        # The line is out: the port must take a connection now, not a moment later.
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    finally:
        process.terminate()
        process.wait(timeout=60)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_taken_port_is_one_line_and_no_listening(settings, tmp_path, workers):
    with listeners(1) as (taken,):
        done = run(SERVICE, _service_env(settings, taken.port, workers), cwd=tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "listening on" not in output
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if line]
    assert len(lines) == 1, output
    assert f"port {taken.port} on 127.0.0.1 is taken" in lines[0]
