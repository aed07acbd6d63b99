"""A PostgreSQL primary and a streaming standby of it, for tests that fail one over to the
other: each in a temp dir of its own, on free loopback ports, both stopped at the end.

The moves are an operator's (or Patroni's): stop the primary, fence it read-only, promote
the standby, start the old primary again as a standby of the new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg

from devstack.processes import find, spawn
from devstack.servers import Server, restart_postgres, start_postgres
from tests.support.processes import descendants
from tests.support.waiting import eventually

DATABASE = "coupons"
# PostgreSQL refuses to run as root; the Debian package creates this user.
_USER = "postgres" if os.geteuid() == 0 else None


@dataclass
class PostgresNode:
    server: Server
    data: Path

    @property
    def port(self) -> int:
        port = urlsplit(self.server.url).port
        assert port is not None
        return port

    @property
    def url(self) -> str:
        """This node alone, as a client that knows one host would name it."""
        return f"{self.server.url}/{DATABASE}"

    async def sql(self, statement: str) -> object:
        """One statement on a connection of its own, outside any pool under test."""
        connection = await asyncpg.connect(self.url)
        try:
            return await connection.fetchval(statement)
        finally:
            await connection.close()

    async def stop(self) -> None:
        """A fast shutdown: sessions end, and the standby is sent all the WAL first."""
        await asyncio.to_thread(self.server.stop)


@dataclass
class PostgresPair:
    primary: PostgresNode
    standby: PostgresNode

    def url(self) -> str:
        """Both hosts, the primary first, as DATABASE_URL names a replicated PostgreSQL."""
        hosts = ",".join(f"127.0.0.1:{node.port}" for node in (self.primary, self.standby))
        return f"postgresql://postgres@{hosts}/{DATABASE}?target_session_attrs=read-write"

    async def promote_standby(self) -> None:
        """`pg_ctl promote`, and wait until it takes writes."""
        await self.standby.sql("SELECT pg_promote(wait => true)")

    async def fence_primary(self) -> None:
        """Turn the primary read-only while it runs, as a switchover does before promoting
        its standby: every session's next write is refused (ReadOnlySQLTransactionError),
        and asyncpg no longer takes it for read-write. Returns once the standby has
        replayed all it wrote (commits here are asynchronous: WAL reaches the standby as
        the WAL writer flushes it)."""
        await self.primary.sql("ALTER SYSTEM SET default_transaction_read_only = on")
        await self.primary.sql("SELECT pg_reload_conf()")
        written = await self.primary.sql("SELECT pg_current_wal_insert_lsn()::text")
        replayed = f"SELECT pg_last_wal_replay_lsn() >= '{written}'::pg_lsn"
        await eventually(lambda: self.standby.sql(replayed))

    async def hold_back_replication(self) -> None:
        """Stop the primary's WAL sender (SIGSTOP): what the primary commits from now on
        is acknowledged to its clients and never reaches the standby, as with an
        asynchronous standby that lags when its primary dies."""
        pid = await self.primary.sql("SELECT pid FROM pg_stat_replication")
        assert isinstance(pid, int), "the standby is not streaming"
        os.kill(pid, signal.SIGSTOP)

    async def crash_primary(self) -> None:
        """kill -9 of the primary's postmaster and every backend: a host lost."""
        process = self.primary.server.process
        for pid in {process.pid, *descendants(process.pid)}:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        await asyncio.to_thread(process.wait)

    async def demote_old_primary(self) -> None:
        """Start the stopped old primary again as a standby of the promoted one (after a
        clean stop it can follow the new timeline without pg_rewind)."""
        data = self.primary.data
        (data / "standby.signal").touch()
        new_primary = f"host=127.0.0.1 port={self.standby.port} user=postgres"
        with (data / "postgresql.auto.conf").open("a") as conf:
            conf.write(f"primary_conninfo = '{new_primary}'\n")
        if _USER:
            for path in (data / "standby.signal", data / "postgresql.auto.conf"):
                shutil.chown(path, _USER, _USER)
        await asyncio.to_thread(restart_postgres, self.primary.server)


@contextmanager
def postgres_pair() -> Iterator[PostgresPair]:
    with ExitStack() as stack:
        root = Path(tempfile.mkdtemp(prefix="coupon-pg-pair-"))
        stack.callback(shutil.rmtree, root, ignore_errors=True)
        root.chmod(0o755)  # the postgres user must reach the data dirs inside
        primary_root, standby_root = root / "primary", root / "standby"
        for folder in (primary_root, standby_root):
            folder.mkdir()
            folder.chmod(0o755)
        primary = start_postgres(primary_root, databases=(DATABASE,))
        stack.callback(primary.stop)
        _base_backup(primary, standby_root / "postgres", standby_root / "basebackup.log")
        standby = start_postgres(standby_root, databases=())
        stack.callback(standby.stop)
        yield PostgresPair(
            PostgresNode(primary, primary_root / "postgres"),
            PostgresNode(standby, standby_root / "postgres"),
        )


def _base_backup(primary: Server, data: Path, log_path: Path) -> None:
    """pg_basebackup with -R: the copy starts as a standby streaming from `primary`."""
    data.mkdir(mode=0o700)
    if _USER:
        shutil.chown(data, _USER, _USER)
    port = str(urlsplit(primary.url).port)
    bin_dirs = sorted((str(p) for p in Path("/usr/lib/postgresql").glob("*/bin")), reverse=True)
    argv = [find("pg_basebackup", *bin_dirs), "-h", "127.0.0.1", "-p", port, "-U", "postgres"]
    argv += ["-D", str(data), "-R", "-X", "stream", "-c", "fast", "--no-sync"]
    backup = spawn("pg_basebackup", argv, log_path, user=_USER, stop_signal=signal.SIGTERM)
    if backup.wait(timeout=120) != 0:
        raise RuntimeError(f"pg_basebackup failed:\n{log_path.read_text()[-2000:]}")
