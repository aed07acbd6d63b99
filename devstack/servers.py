"""Local PostgreSQL, Redis and MongoDB-compatible servers on loopback ports.

Each server lives in its own folder under one root. Throw-away ones (the tests') start
fresh on free ports with durability off; kept ones (`python -m devstack run`) find their
data where they left it and write it durably enough to survive their own restart.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from devstack.ferretdb import ferretdb_binary
from devstack.processes import (
    Server,
    StackError,
    accepts_tcp,
    find,
    free_port,
    spawn,
    wait_until,
)

__all__ = [
    "Server",
    "StackError",
    "free_port",
    "postgres_bin_dir",
    "start_ferretdb",
    "start_mongod",
    "start_postgres",
    "start_redis",
]


def _postgres_bin_dirs() -> list[str]:
    return sorted((str(p) for p in Path("/usr/lib/postgresql").glob("*/bin")), reverse=True)


def postgres_bin_dir() -> Path:
    """The folder of the machine's PostgreSQL programs, pg_rewind and pg_basebackup too
    (a symlink to `initdb` on PATH is followed to it)."""
    return Path(find("initdb", *_postgres_bin_dirs())).resolve().parent


def _reachable_by_others(path: Path) -> bool:
    return all(p.stat().st_mode & stat.S_IXOTH for p in path.resolve().parents)


def _initdb(
    initdb: str, data: Path, log_path: Path, user: str | None, durable: bool, password: str | None
) -> None:
    data.mkdir(exist_ok=True)
    if user:
        shutil.chown(data, user, user)
    argv = [initdb, "-D", str(data), "-U", "postgres", "-E", "UTF8"]
    argv += ["--locale=C", *([] if durable else ["--no-sync"])]
    password_file = data.parent / "postgres-password"
    if password is None:
        argv += ["-A", "trust"]
    else:
        password_file.write_text(password)
        if user:
            shutil.chown(password_file, user, user)
        argv += ["-A", "scram-sha-256", f"--pwfile={password_file}"]
    init = spawn("initdb", argv, log_path, user=user)
    try:
        if init.wait() != 0:
            raise StackError(f"initdb failed; its log: {log_path}\n{log_path.read_text()[-2000:]}")
    finally:
        password_file.unlink(missing_ok=True)


def start_postgres(
    root: Path,
    databases: tuple[str, ...],
    *,
    port: int = 0,
    keep: bool = False,
    durable: bool = False,
    max_connections: int = 400,
    password: str | None = None,
    statement_stats: bool = False,
) -> Server:
    """PostgreSQL with trust auth on loopback only, and `databases` created if missing.
    With `password`, the user postgres must give it (scram-sha-256), as on most servers.

    Tuned for throw-away data by default: without fsync (and with commits acknowledged
    before their WAL is written) a crash of PostgreSQL or of the machine can lose commits
    it acknowledged. `durable`: fsync, synchronous commits and full-page writes on, as in
    production, for the tests that crash a store and count on committed data surviving.
    `keep`: data found in `root` is used as it is (initdb only into an empty folder), and
    kept durably. `max_connections`: 100 is the stock images' (a test of the budget).
    `statement_stats`: preload pg_stat_statements (bench --explain counts statements).
    """
    durable = durable or keep
    initdb = find("initdb", *_postgres_bin_dirs())
    postgres = str(Path(initdb).with_name("postgres"))
    psql = find("psql", *_postgres_bin_dirs())
    # PostgreSQL refuses to run as root; the Debian package creates this user.
    user = "postgres" if os.geteuid() == 0 else None
    data = root / "postgres"
    if user and not _reachable_by_others(data):
        raise StackError(
            f"postgres cannot start: the postgres user cannot reach {data} "
            "(a folder above it is not searchable by others); work in a folder it can reach"
        )
    log_path = root / "postgres.log"
    if not (data / "PG_VERSION").exists():
        _initdb(initdb, data, log_path, user, durable, password)
    port = port or free_port()
    settings = {
        "listen_addresses": "127.0.0.1",
        "port": str(port),
        "unix_socket_directories": "",  # TCP only: a deep working tree overflows a socket path
        "max_connections": str(max_connections),
        "fsync": "on" if durable else "off",
        "synchronous_commit": "on" if durable else "off",
        "full_page_writes": "on" if durable else "off",
        "shared_buffers": "256MB",
    }
    if statement_stats:
        settings["shared_preload_libraries"] = "pg_stat_statements"
    argv = [postgres, "-D", str(data)] + [f"-c{key}={value}" for key, value in settings.items()]
    # SIGINT is PostgreSQL's fast shutdown: it does not wait for clients to hang up.
    process = spawn("postgres", argv, log_path, user=user, stop_signal=signal.SIGINT)
    login = "postgres" if password is None else f"postgres:{password}"
    server = Server(
        "postgres", f"postgresql://{login}@127.0.0.1:{port}", process, log_path, signal.SIGINT
    )
    psql_env = os.environ if password is None else {**os.environ, "PGPASSWORD": password}

    def psql_run(sql: str) -> subprocess.CompletedProcess[bytes]:
        argv = [psql, "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", "postgres"]
        return subprocess.run([*argv, "-Atqc", sql], capture_output=True, env=psql_env)

    try:
        wait_until("postgres", lambda: psql_run("SELECT 1").returncode == 0, process, log_path)
        for database in databases:
            found = psql_run(f"SELECT 1 FROM pg_database WHERE datname = '{database}'")
            if found.returncode == 0 and found.stdout.strip():
                continue
            created = psql_run(f'CREATE DATABASE "{database}"')
            if created.returncode != 0:
                raise StackError(f"postgres: creating database {database}: {created.stderr!r}")
    except BaseException:
        server.stop()
        raise
    return server


def restart_postgres(server: Server) -> None:
    """Stop a PostgreSQL of start_postgres() as `pg_ctl stop -m fast` does (SIGINT: every
    session ends, open transactions roll back) and start it again: same port, same data."""
    server.stop()  # its stop signal is SIGINT
    argv = [str(arg) for arg in server.process.args]  # type: ignore[union-attr]
    # As start_postgres: PostgreSQL refuses to run as root.
    user = "postgres" if os.geteuid() == 0 else None
    server.process = spawn("postgres", argv, server.log_path, user=user, stop_signal=signal.SIGINT)
    wait_until("postgres", _accepts_postgres(server.url), server.process, server.log_path)


def _accepts_postgres(url: str) -> Callable[[], bool]:
    """Whether the server takes queries yet (it accepts TCP while still starting up)."""
    psql = find("psql", *_postgres_bin_dirs())
    port = str(urlsplit(url).port)
    argv = [psql, "-h", "127.0.0.1", "-p", port, "-U", "postgres", "-d", "postgres"]

    def check() -> bool:
        return subprocess.run([*argv, "-Atqc", "SELECT 1"], capture_output=True).returncode == 0

    return check


def start_redis(root: Path, *, port: int = 0, keep: bool = False) -> Server:
    """Redis; `keep`: its append-only file in `root` is replayed at start and kept up."""
    port = port or free_port()
    data = root / "redis"
    data.mkdir(exist_ok=True)
    log_path = root / "redis.log"
    argv = [find("redis-server"), "--port", str(port), "--bind", "127.0.0.1"]
    argv += ["--dir", str(data), "--save", "", "--appendonly", "yes" if keep else "no"]
    argv += ["--daemonize", "no", "--maxclients", "4096"]
    process = spawn("redis", argv, log_path)
    wait_until("redis", accepts_tcp(port), process, log_path)
    return Server("redis", f"redis://127.0.0.1:{port}/0", process, log_path)


def start_ferretdb(
    root: Path, postgres_url: str, *, database: str = "ferretdb", port: int = 0
) -> Server:
    """FerretDB v1 on the PostgreSQL backend (`database` of the given server): no data of its own.

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
    process = spawn("ferretdb", argv, log_path)
    wait_until("ferretdb", accepts_tcp(port), process, log_path)
    return Server("ferretdb", f"mongodb://127.0.0.1:{port}", process, log_path)


def start_mongod(root: Path, *, port: int = 0) -> Server:
    """mongod with its data in `root` (kept or not: the root decides)."""
    port = port or free_port()
    data = root / "mongod"
    data.mkdir(exist_ok=True)
    log_path = root / "mongod.log"
    argv = [find("mongod"), "--port", str(port), "--bind_ip", "127.0.0.1"]
    process = spawn("mongod", [*argv, "--dbpath", str(data), "--quiet"], log_path)
    wait_until("mongod", accepts_tcp(port), process, log_path)
    return Server("mongod", f"mongodb://127.0.0.1:{port}", process, log_path)
