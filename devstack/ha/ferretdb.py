"""FerretDB on the Patroni cluster: its pgx driver takes the same multi-host URL with
target_session_attrs=read-write as libpq, so its failover follows PostgreSQL's."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from devstack.ferretdb import ferretdb_binary
from devstack.processes import Server, accepts_tcp, spawn, wait_until

DATABASE = "ferretdb"


@dataclass
class FerretDB:
    home: Path
    postgres_url: str  # the cluster's, naming DATABASE
    port: int
    server: Server | None = None

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.home.mkdir(exist_ok=True)
        # Run through a link in the stack's folder: the command line names the folder, so
        # a later run finds it if this one is killed (devstack/ha/leftovers.py).
        binary = self.home / "ferretdb"
        if not binary.exists():
            binary.symlink_to(ferretdb_binary())
        argv = [str(binary), f"--listen-addr=127.0.0.1:{self.port}", "--log-level=warn"]
        argv += ["--handler=postgresql", f"--postgresql-url={self.postgres_url}"]
        log_path = self.home.parent / "ferretdb.log"
        process = spawn("ferretdb", argv, log_path)
        self.server = Server("ferretdb", self.url, process, log_path)
        wait_until("ferretdb", accepts_tcp(self.port), process, log_path)

    def running(self) -> bool:
        return self.server is not None and self.server.process.poll() is None

    def kill(self) -> None:
        """kill -9: every client connection drops, nothing listens until restart()."""
        if self.server is not None:
            self.server.process.kill()
            self.server.process.wait()

    def restart(self) -> None:
        """Start it again on the same port."""
        if not self.running():
            self.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
