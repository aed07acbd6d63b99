"""One Patroni node: a Patroni process (as the postgres user) and the PostgreSQL it runs.

Patroni writes its PostgreSQL's settings (devstack/ha/patroni_config.py), starts and
stops it, and keeps the leader key in etcd; its REST API says the node's role.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devstack.ha.patroni_config import USER
from devstack.ha.proctable import kill_all, processes, wait_gone, with_descendants
from devstack.processes import Server, find, spawn
from devstack.servers import postgres_bin_dir


@dataclass
class PatroniNode:
    name: str
    home: Path
    pg_port: int
    rest_port: int
    server: Server | None = None

    @property
    def pg_address(self) -> str:
        return f"127.0.0.1:{self.pg_port}"

    @property
    def rest_address(self) -> str:
        return f"127.0.0.1:{self.rest_port}"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def config_path(self) -> Path:
        return self.home / "patroni.yml"

    def write_config(self, settings: dict[str, Any]) -> None:
        self.home.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.home, USER, USER)
        self.config_path.write_text(json.dumps(settings, indent=2))

    def start(self) -> None:
        log_path = self.home.parent / f"{self.name}.log"
        argv = [find("patroni"), str(self.config_path)]
        user = USER if os.geteuid() == 0 else None
        process = spawn(self.name, argv, log_path, user=user)
        self.server = Server(self.name, f"http://{self.rest_address}", process, log_path)

    def running(self) -> bool:
        return self.server is not None and self.server.process.poll() is None

    def status(self) -> dict[str, Any] | None:
        """Patroni's own account of the node (GET /patroni), or None if it does not answer."""
        code, body = self.api("GET", "/patroni")
        try:
            return json.loads(body) if code == 200 else None
        except ValueError:
            return None

    def role(self) -> str | None:
        """primary or replica while its PostgreSQL runs, else None."""
        status = self.status()
        if status is None or status.get("state") != "running":
            return None
        role = status.get("role")
        return "primary" if role in ("master", "primary") else role

    def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, str]:
        """Patroni's REST API: the status code and the body (0 when nothing answers)."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"http://{self.rest_address}{path}", data, method=method)
        try:
            # A switchover's answer waits for its outcome; a status answers at once.
            timeout = 3 if method == "GET" else 60
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()
        except OSError:
            return 0, ""

    def psql(self, statement: str) -> list[str]:
        """The psql command running `statement` on this node alone, as the superuser."""
        argv = [find("psql", str(postgres_bin_dir())), "-h", "127.0.0.1", "-p", str(self.pg_port)]
        return [*argv, "-U", USER, "-d", "postgres", "-Atqc", statement]

    def sql(self, statement: str, *, timeout: float = 5.0) -> str | None:
        """`statement`'s output through psql on this node alone, or None if it failed (no
        server, refused, read-only, or no answer within `timeout`)."""
        env = {**os.environ, "PGCONNECT_TIMEOUT": "2"}
        try:
            done = subprocess.run(
                self.psql(statement), capture_output=True, text=True, env=env, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    def postgres_pids(self) -> set[int]:
        """The postmaster and all its children (backends, walreceiver, ...), if it runs."""
        table = processes()
        postmasters = {p.pid for p in table if f"-D {self.data_dir}" in p.cmdline}
        return with_descendants(postmasters, table)

    def pids_titled(self, word: str) -> set[int]:
        """Its PostgreSQL processes whose title holds `word` ("walreceiver", "walsender")."""
        titles = {p.pid: p.cmdline for p in processes()}
        return {pid for pid in self.postgres_pids() if word in titles.get(pid, "")}

    def kill_postgres(self) -> None:
        """SIGKILL the postmaster and every backend at once: PostgreSQL crashed, Patroni lives."""
        kill_all(self.postgres_pids())

    def kill(self) -> None:
        """SIGKILL Patroni and its PostgreSQL: the machine is gone, its leader key lapses."""
        pids = self.postgres_pids()
        if self.server is not None:
            self.server.process.kill()
            self.server.process.wait()
        kill_all(pids)

    def stop(self) -> None:
        """PostgreSQL's fast shutdown (SIGINT: sessions end, a checkpoint is written) while
        Patroni is killed: the stack goes with its etcd, and Patroni's own stop would spend
        seconds handing over a role nobody will hold."""
        pids = self.postgres_pids()
        for pid in pids:  # a stopped one (a paused walreceiver) would hold the shutdown up
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        if self.server is not None:
            self.server.process.kill()
            self.server.process.wait()
        postmasters = {p.pid for p in processes() if f"-D {self.data_dir}" in p.cmdline}
        for pid in postmasters:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGINT)
        wait_gone(pids)
        kill_all(self.postgres_pids())
