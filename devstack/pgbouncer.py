"""A throw-away PgBouncer in transaction pooling mode, in front of a PostgreSQL database.

Like the other servers it listens on a free loopback port, lives in a temp dir of its
own and dies with the process that started it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

from devstack.processes import Server, accepts_tcp, find, free_port, spawn, wait_until

_USER = "postgres"  # who connects to PgBouncer, also to its admin console


def _connstring(database_url: str) -> tuple[str, str]:
    """The database's name and PgBouncer's `key=value` line for reaching it."""
    url = urlsplit(database_url)
    database = url.path.lstrip("/") or "postgres"
    parts = {
        "host": url.hostname or "127.0.0.1",
        "port": str(url.port or 5432),
        "dbname": unquote(database),
        "user": unquote(url.username or "postgres"),
    }
    if url.password:
        parts["password"] = unquote(url.password)
    return database, " ".join(f"{key}='{value}'" for key, value in parts.items())


def _version(binary: str) -> tuple[int, int]:
    banner = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
    found = re.search(r"PgBouncer (\d+)\.(\d+)", banner)
    return (int(found[1]), int(found[2])) if found else (0, 0)


def _config(
    database_url: str, port: int, pool_size: int, version: tuple[int, int]
) -> tuple[str, str]:
    """The ini file's text and the database's name."""
    database, target = _connstring(database_url)
    # 1.21 and later can track prepared statements (1.24 does by default); turned off, so
    # every version is tested as 1.18 behaves. 1.18 refuses to start with the setting.
    tracking = "max_prepared_statements = 0\n" if version >= (1, 21) else ""
    return (
        f"""[databases]
{database} = {target}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
; Clients are not authenticated (loopback only); PgBouncer logs in as the user above.
auth_type = any
pool_mode = transaction
; Fewer server connections than clients: transactions move between servers all the time.
default_pool_size = {pool_size}
max_client_conn = 2000
; The admin console (PAUSE, RESUME, SHOW): only for users named here, also under `any`.
admin_users = {_USER}
{tracking}""",
        database,
    )


@contextlib.contextmanager
def running_pgbouncer(database_url: str, *, pool_size: int = 8) -> Iterator[Server]:
    """PgBouncer (pool_mode=transaction) in front of `database_url`; its url is the same
    database through PgBouncer."""
    root = Path(tempfile.mkdtemp(prefix="coupon-pgbouncer-"))
    root.chmod(0o755)  # PgBouncer refuses to run as root: the postgres user reads its ini
    server: Server | None = None
    try:
        port = free_port()
        binary = find("pgbouncer", "/usr/sbin")
        config, database = _config(database_url, port, pool_size, _version(binary))
        ini = root / "pgbouncer.ini"
        ini.write_text(config)
        ini.chmod(0o644)
        log_path = root / "pgbouncer.log"
        process = _spawn([binary, str(ini)], log_path)
        server = Server(
            "pgbouncer", f"postgresql://{_USER}@127.0.0.1:{port}/{database}", process, log_path
        )
        wait_until("pgbouncer", accepts_tcp(port), process, log_path)
        yield server
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)


def _spawn(argv: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    user = "postgres" if os.geteuid() == 0 else None  # PgBouncer refuses to run as root
    return spawn("pgbouncer", argv, log_path, user=user)


def kill_pgbouncer(server: Server) -> None:
    """SIGKILL, as a crash or the OOM killer would: every client and server connection
    drops at once, and nothing listens on its port until it is restarted."""
    server.process.kill()
    server.process.wait()


def restart_pgbouncer(server: Server) -> None:
    """Start a PgBouncer of running_pgbouncer() again after it stopped: same port, same
    settings (its ini file), empty pools."""
    argv = [str(arg) for arg in server.process.args]  # type: ignore[union-attr]
    server.process = _spawn(argv, server.log_path)
    port = urlsplit(server.url).port
    assert port is not None
    wait_until("pgbouncer", accepts_tcp(port), server.process, server.log_path)


def admin_command(server: Server, command: str) -> str:
    """Run `command` on PgBouncer's admin console (its `pgbouncer` database) through psql,
    which speaks the simple query protocol the console requires; its output, one row a line.
    `PAUSE` returns once every server connection is idle (no transaction in flight)."""
    port = str(urlsplit(server.url).port)
    argv = [find("psql"), "-h", "127.0.0.1", "-p", port, "-U", _USER, "-d", "pgbouncer"]
    done = subprocess.run([*argv, "-Atc", command], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"pgbouncer admin console: {command}: {done.stderr.strip()}")
    return done.stdout
