"""`make run` without Docker: `python -m devstack run` in a working tree of its own.

It starts the stores no URL names, keeps their data in `.run/`, and on SIGTERM stops the
gateway and then every store it started; a store named by URL is used and left alone. The
gateway listens on loopback unless HOST says otherwise, and the `coupon-saga` line it prints
runs as pasted, with no virtualenv on PATH.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from devstack.processes import accepts_tcp
from devstack.servers import free_port
from tests.support.api import claim, create, details
from tests.support.processes import (
    blocked_signals,
    command_name,
    descendants,
    listeners,
    mentioning,
    running,
)
from tests.support.servers import wait_healthy

URL_SETTINGS = ("DATABASE_URL", "MONGO_URL", "REDIS_URL")
PRINTED_SAGA_COMMAND = re.compile(r"coupon-service: coupon-saga on these stores: (.+)$", re.M)


@dataclass
class LocalRun:
    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    def stop(self, signum: signal.Signals = signal.SIGTERM) -> int:
        """SIGTERM as a service manager sends, or SIGINT as Ctrl-C does; its exit code."""
        self.process.send_signal(signum)
        return self.process.wait(timeout=120)


@pytest.fixture
def working_tree() -> Iterator[Path]:
    """A fresh folder the postgres user can reach (pytest's own temp dirs are private)."""
    path = Path(tempfile.mkdtemp(prefix="coupon-run-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def spawn(working_tree: Path, log_path: Path, **env: str) -> LocalRun:
    port = free_port()
    # No HOST: where it listens unless told is part of what is tested.
    environ = {k: v for k, v in os.environ.items() if k not in (*URL_SETTINGS, "HOST")}
    environ |= {"PORT": str(port), "WORKERS": "1", **env}
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "devstack", "run"],
            cwd=working_tree,
            env=environ,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return LocalRun(process, f"http://127.0.0.1:{port}", log_path)


def wait_announced(run: LocalRun) -> None:
    """Until it says where the API is (once the port answers): initdb and three servers first."""
    for _ in range(3600):
        if "coupon-service: API on" in run.log_path.read_text():
            return
        assert run.process.poll() is None, run.log_path.read_text()[-3000:]
        time.sleep(0.05)
    raise AssertionError(f"never said where the API is:\n{run.log_path.read_text()[-3000:]}")


@contextmanager
def local_run(working_tree: Path, log_path: Path, **env: str) -> Iterator[LocalRun]:
    run = spawn(working_tree, log_path, **env)
    try:
        wait_announced(run)
        wait_healthy(run.base_url, run.process, log_path)
        yield run
    finally:
        if run.process.poll() is None:
            run.stop()


def started_processes(run: LocalRun) -> dict[int, str]:
    return {pid: command_name(pid) for pid in descendants(run.process.pid)}


def listening_addresses(port: int) -> set[str]:
    """The addresses a TCP socket listens on at `port`, from /proc/net/tcp and tcp6."""
    found = set()
    for table in ("tcp", "tcp6"):
        for row in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            local, state = row.split()[1], row.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                raw = bytes.fromhex(address)
                # The kernel prints each 32-bit word in host (little-endian) order.
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
                found.add(
                    socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, words)
                )
    return found


def run_as_pasted(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """A shell in the working tree with no virtualenv on PATH, as a newcomer's terminal is."""
    bare = os.pathsep.join(
        part
        for part in os.environ["PATH"].split(os.pathsep)
        if Path(part) != Path(sys.executable).parent
    )
    environ = {k: v for k, v in os.environ.items() if k not in (*URL_SETTINGS, "VIRTUAL_ENV")}
    return subprocess.run(
        ["/bin/sh", "-c", command],
        cwd=cwd,
        env=environ | {"PATH": bare},
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_make_run_serves_stops_everything_and_keeps_its_data(http, working_tree, tmp_path):
    name, user = f"PROMO_{uuid.uuid4().hex[:12]}", f"user_{uuid.uuid4().hex[:8]}"
    log_path = tmp_path / "run.log"
    with local_run(working_tree, log_path) as run:
        await create(http, run.base_url, name, 2)
        status, _ = await claim(http, run.base_url, user, name)
        assert status == 200
        assert (await details(http, run.base_url, name))["claimed_by"] == [user]
        # No HOST given: loopback only, where the banner says (a dev gateway has no token).
        assert listening_addresses(int(run.base_url.rsplit(":", 1)[1])) == {"127.0.0.1"}
        printed = PRINTED_SAGA_COMMAND.search(log_path.read_text())
        assert printed is not None, log_path.read_text()[-3000:]
        listed = run_as_pasted(printed.group(1), working_tree)
        assert listed.returncode == 0, (printed.group(1), listed.stderr)
        assert name in listed.stdout  # the claim just made: the same stores
        started = started_processes(run)
        assert {"postgres", "redis-server"} <= set(started.values()), started
        assert {"ferretdb", "mongod"} & set(started.values()), started
        assert run.stop() == 0, log_path.read_text()[-3000:]
    assert [pid for pid in started if running(pid)] == []
    output = log_path.read_text()
    assert output.count(f"coupon-service: API on {run.base_url}\n") == 1
    assert "coupon-saga on these stores: env DATABASE_URL=" in output

    with local_run(working_tree, tmp_path / "again.log") as again:
        found = await details(http, again.base_url, name)
        assert found["claimed_by"] == [user]
        assert found["remaining_amount"] == 1
        assert again.stop() == 0


async def test_a_store_given_by_url_is_used_and_left_running(
    http, settings, working_tree, tmp_path
):
    name = f"PROMO_{uuid.uuid4().hex[:12]}"
    # Its saga log is a Redis of its own: it must not settle the other tests' holds.
    given = {"DATABASE_URL": settings.database_url, "HOLD_SETTLE_SECONDS": "3600"}
    with local_run(working_tree, tmp_path / "run.log", **given) as run:
        await create(http, run.base_url, name, 3)
        started = started_processes(run)
        assert run.stop(signal.SIGINT) == 0
    assert [pid for pid in started if running(pid)] == []

    connection = await asyncpg.connect(settings.database_url)
    try:  # it was used, and it still answers
        assert await connection.fetchval("SELECT amount FROM coupons WHERE name = $1", name) == 3
    finally:
        await connection.close()


def test_a_store_that_cannot_start_is_named_and_nothing_is_left(working_tree, tmp_path):
    log_path = tmp_path / "run.log"
    with listeners(1) as (taken,):
        run_dir = working_tree / ".run"
        run_dir.mkdir()
        (run_dir / "ports.json").write_text(json.dumps({"redis": taken.port}))
        run = spawn(working_tree, log_path)
        code = run.process.wait(timeout=120)

    assert code != 0
    lines = log_path.read_text().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"coupon-service: redis cannot start: port {taken.port} ")
    # PostgreSQL and FerretDB were up before Redis failed: both stopped again.
    ports = json.loads((run_dir / "ports.json").read_text())
    assert {"postgres", "ferretdb"} <= set(ports)
    left = mentioning(str(working_tree), f"127.0.0.1:{ports['ferretdb']}", f"={ports['postgres']}")
    assert left == []


def test_make_stack_servers_hear_their_stop_signal(tmp_path):
    """`python -m devstack` waits with SIGINT/SIGTERM blocked; its servers must not inherit that."""
    log_path = tmp_path / "stack.log"
    # No store named by URL (as the hosted CI names its service containers): it starts all.
    environ = {k: v for k, v in os.environ.items() if k not in URL_SETTINGS}
    with log_path.open("wb") as log:
        stack = subprocess.Popen(
            [sys.executable, "-m", "devstack"], stdout=log, stderr=subprocess.STDOUT, env=environ
        )
    try:
        for _ in range(3600):
            if "stores are up" in log_path.read_text():
                break
            assert stack.poll() is None, log_path.read_text()
            time.sleep(0.05)
        servers = {pid: command_name(pid) for pid in descendants(stack.pid)}
        assert {"postgres", "redis-server"} <= set(servers.values()), servers
        for pid, command in servers.items():
            if command in ("postgres", "redis-server"):
                assert blocked_signals(pid) & {signal.SIGINT, signal.SIGTERM} == set(), command
        stack.send_signal(signal.SIGINT)
        assert stack.wait(timeout=120) == 0
        assert [pid for pid in servers if running(pid)] == []
    finally:
        if stack.poll() is None:
            stack.kill()
            stack.wait()


PROBE = """
import asyncio, os, sys
from urllib.parse import urlsplit
import asyncpg

async def main():
    url = os.environ["DATABASE_URL"]
    await (await asyncpg.connect(url)).close()
    try:
        await asyncpg.connect(url.replace(":" + sys.argv[1] + "@", "@"))
    except asyncpg.InvalidPasswordError:
        print("refused without the password")
    print(urlsplit(url).port)

asyncio.run(main())
sys.exit(7)
"""


def test_make_stack_runs_a_command_on_stores_asking_for_a_password(tmp_path):
    """`python -m devstack --password P -- COMMAND`: the command gets the stores' URLs (a
    PostgreSQL that refuses a login without P), its exit code, and the stores stop after."""
    environ = {k: v for k, v in os.environ.items() if k not in URL_SETTINGS}
    password = uuid.uuid4().hex
    probe = [sys.executable, "-c", PROBE, password]
    ran = subprocess.run(
        [sys.executable, "-m", "devstack", "--password", password, "--", *probe],
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert ran.returncode == 7, ran.stderr
    said, port = ran.stdout.splitlines()
    assert said == "refused without the password"
    assert not accepts_tcp(int(port))()  # stopped with the stack
