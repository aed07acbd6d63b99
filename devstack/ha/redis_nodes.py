"""A redis-server or a Sentinel of the HA stack, each reading a config file of its own.

As in production, Sentinel rewrites the files of the servers it reconfigures (and its
own), so a server started again comes back as what it last was told to be.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import redis

from devstack.processes import Server, find, free_port, spawn


@dataclass
class RedisProcess:
    name: str
    port: int
    conf: Path
    sentinel: bool = False
    server: Server | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        argv = [find("redis-server"), str(self.conf), *(["--sentinel"] if self.sentinel else [])]
        log_path = self.conf.parent.parent / f"{self.name}.log"
        process = spawn(self.name, argv, log_path)
        self.server = Server(self.name, f"redis://{self.address}", process, log_path)

    def running(self) -> bool:
        return self.server is not None and self.server.process.poll() is None

    def ask(self, *command: str) -> object:
        """One command's answer, or None if the server does not answer or refuses it."""
        with redis.Redis(port=self.port, socket_timeout=2, decode_responses=True) as client:
            try:
                return client.execute_command(*command)
            except (redis.RedisError, OSError):
                return None

    def replication(self) -> dict[str, object]:
        """INFO replication as a dict (empty if the server does not answer)."""
        answer = self.ask("INFO", "replication")
        return answer if isinstance(answer, dict) else {}

    def kill(self) -> None:
        """SIGKILL: no shutdown save, clients cut at once."""
        if self.server is not None:
            self.server.process.kill()
            self.server.process.wait()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


def redis_server(folder: Path, name: str, *, replica_of: int | None = None) -> RedisProcess:
    """A Redis without persistence; a replica of 127.0.0.1:`replica_of` if given."""
    port = free_port()
    lines = [f"port {port}", 'save ""', "appendonly no", "repl-diskless-sync-delay 0"]
    if replica_of is not None:
        lines.append(f"replicaof 127.0.0.1 {replica_of}")
    return RedisProcess(name, port, _write_conf(folder / name, "redis.conf", lines))


def sentinel(
    folder: Path, name: str, master: str, master_port: int, settings: dict[str, int | str]
) -> RedisProcess:
    """A Sentinel watching 127.0.0.1:`master_port` under the name `master`."""
    port = free_port()
    lines = [f"port {port}", "sentinel resolve-hostnames no"]
    lines.append(f"sentinel monitor {master} 127.0.0.1 {master_port} {settings['quorum']}")
    lines += [
        f"sentinel {key} {master} {value}" for key, value in settings.items() if key != "quorum"
    ]
    conf = _write_conf(folder / name, "sentinel.conf", lines)
    return RedisProcess(name, port, conf, sentinel=True)


def _write_conf(folder: Path, file_name: str, lines: list[str]) -> Path:
    folder.mkdir()
    common = [
        "bind 127.0.0.1",
        "daemonize no",
        f"dir {folder}",
        'logfile ""',
        # The config file's path in the process title: a later run finds a leftover by it.
        'proc-title-template "{title} {listen-addr} {server-mode} {config-file}"',
    ]
    conf = folder / file_name
    conf.write_text("\n".join([*lines, *common]) + "\n")
    return conf
