"""Throw-away PostgreSQL, Redis and MongoDB-compatible servers on free loopback ports.

Each server lives in its own folder under one temp dir and dies with the process that
started it (PR_SET_PDEATHSIG), so a killed test run leaves nothing behind.
"""

from __future__ import annotations

import ctypes
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from devstack.ferretdb import ferretdb_binary

_PR_SET_PDEATHSIG = 1
_START_TIMEOUT = 60.0


class StackError(RuntimeError):
    """A server could not be found or started."""


@dataclass
class Server:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    # Runs in the child after the uid switch: a credential change clears the setting.
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _spawn(
    name: str, argv: list[str], log_path: Path, *, user: str | None = None
) -> subprocess.Popen[bytes]:
    log = log_path.open("ab")
    try:
        return subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            user=user,
            group=pwd.getpwnam(user).pw_gid if user else None,
            extra_groups=[] if user else None,
            preexec_fn=_die_with_parent,
        )
    except FileNotFoundError as error:
        raise StackError(f"{name}: {argv[0]} not found; run `make deps`") from error
    finally:
        log.close()


def _wait_until(
    name: str, server_ready: Callable[[], bool], process: subprocess.Popen[bytes], log_path: Path
) -> None:
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise StackError(
                f"{name} exited with {process.returncode}:\n{log_path.read_text()[-2000:]}"
            )
        if server_ready():
            return
        time.sleep(0.1)
    process.kill()
    raise StackError(
        f"{name} did not start within {_START_TIMEOUT:.0f}s:\n{log_path.read_text()[-2000:]}"
    )


def _accepts_tcp(port: int) -> Callable[[], bool]:
    def check() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            return False

    return check


def _find(binary: str, *extra_dirs: str) -> str:
    found = shutil.which(binary)
    for directory in extra_dirs:
        candidate = Path(directory) / binary
        if not found and candidate.exists():
            found = str(candidate)
    if not found:
        raise StackError(f"{binary} not found; run `make deps`")
    return found


def _postgres_bin_dirs() -> list[str]:
    return sorted((str(p) for p in Path("/usr/lib/postgresql").glob("*/bin")), reverse=True)


def start_postgres(root: Path, databases: tuple[str, ...], *, durable: bool = False) -> Server:
    """PostgreSQL with trust auth on loopback only, tuned for throw-away data: no fsync.

    Without fsync (and with commits acknowledged before their WAL is written) a crash of
    PostgreSQL or of the machine can lose commits it acknowledged. `durable`: fsync,
    synchronous commits and full-page writes on, as in production, for the tests that
    crash a store and count on committed data surviving it.
    """
    initdb = _find("initdb", *_postgres_bin_dirs())
    postgres = str(Path(initdb).with_name("postgres"))
    psql = _find("psql", *_postgres_bin_dirs())
    # PostgreSQL refuses to run as root; the Debian package creates this user.
    user = "postgres" if os.geteuid() == 0 else None
    data = root / "postgres"
    data.mkdir()
    if user:
        shutil.chown(data, user, user)
    log_path = root / "postgres.log"
    init = _spawn(
        "initdb",
        [
            initdb,
            "-D",
            str(data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            *([] if durable else ["--no-sync"]),
        ],
        log_path,
        user=user,
    )
    if init.wait() != 0:
        raise StackError(f"initdb failed:\n{log_path.read_text()[-2000:]}")
    port = free_port()
    settings = {
        "listen_addresses": "127.0.0.1",
        "port": str(port),
        "unix_socket_directories": str(data),
        "max_connections": "400",
        "fsync": "on" if durable else "off",
        "synchronous_commit": "on" if durable else "off",
        "full_page_writes": "on" if durable else "off",
        "shared_buffers": "256MB",
    }
    argv = [postgres, "-D", str(data)] + [f"-c{key}={value}" for key, value in settings.items()]
    process = _spawn("postgres", argv, log_path, user=user)

    def psql_run(sql: str) -> subprocess.CompletedProcess[bytes]:
        argv = [
            psql,
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-Atqc",
            sql,
        ]
        return subprocess.run(argv, capture_output=True)

    _wait_until("postgres", lambda: psql_run("SELECT 1").returncode == 0, process, log_path)
    for database in databases:
        created = psql_run(f'CREATE DATABASE "{database}"')
        if created.returncode != 0:
            raise StackError(f"creating database {database}: {created.stderr.decode()}")
    return Server("postgres", f"postgresql://postgres@127.0.0.1:{port}", process, log_path)


def start_redis(root: Path) -> Server:
    port = free_port()
    data = root / "redis"
    data.mkdir()
    log_path = root / "redis.log"
    argv = [
        _find("redis-server"),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(data),
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
        "--maxclients",
        "4096",
    ]
    process = _spawn("redis", argv, log_path)
    _wait_until("redis", _accepts_tcp(port), process, log_path)
    return Server("redis", f"redis://127.0.0.1:{port}/0", process, log_path)


def start_ferretdb(
    root: Path, postgres_url: str, *, database: str = "ferretdb", port: int = 0
) -> Server:
    """FerretDB v1 on the PostgreSQL backend (`database` of the given server).

    `port`: 0 for a free one; a test restarting its FerretDB passes the one it had.
    """
    port = port or free_port()
    log_path = root / "ferretdb.log"
    argv = [
        str(ferretdb_binary()),
        f"--listen-addr=127.0.0.1:{port}",
        "--handler=postgresql",
        f"--postgresql-url={postgres_url}/{database}",
        "--log-level=warn",
    ]
    process = _spawn("ferretdb", argv, log_path)
    _wait_until("ferretdb", _accepts_tcp(port), process, log_path)
    return Server("ferretdb", f"mongodb://127.0.0.1:{port}", process, log_path)


def start_mongod(root: Path) -> Server:
    port = free_port()
    data = root / "mongod"
    data.mkdir()
    log_path = root / "mongod.log"
    argv = [
        _find("mongod"),
        "--port",
        str(port),
        "--bind_ip",
        "127.0.0.1",
        "--dbpath",
        str(data),
        "--quiet",
    ]
    process = _spawn("mongod", argv, log_path)
    _wait_until("mongod", _accepts_tcp(port), process, log_path)
    return Server("mongod", f"mongodb://127.0.0.1:{port}", process, log_path)
