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
        user = "postgres" if os.geteuid() == 0 else None
        process = spawn(
            "pgbouncer", [find("pgbouncer", "/usr/sbin"), str(ini)], log_path, user=user
        )
        server = Server(
            "pgbouncer", f"postgresql://postgres@127.0.0.1:{port}/{database}", process, log_path
        )
        wait_until("pgbouncer", accepts_tcp(port), process, log_path)
        yield server
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)
