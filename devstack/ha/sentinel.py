"""Redis primary + replica watched by 3 Sentinels, and the faults tests inflict on them.

A master killed and started again comes back as a master (its config file was not
rewritten: it was down) until the Sentinels turn it into a replica, some seconds later;
clients that ask a Sentinel for the master never see it as one.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from devstack.ha.redis_nodes import RedisProcess, redis_server, sentinel
from devstack.ha.waiting import poll
from devstack.processes import Server, StackError

MASTER_NAME = "coupons"
SENTINEL_SETTINGS: dict[str, int | str] = {
    "quorum": 2,
    "down-after-milliseconds": 1000,
    # Also how long after a failover a Sentinel waits before starting another (twice it).
    "failover-timeout": 3000,
    "parallel-syncs": 1,
}


class SentinelGroup:
    def __init__(self, root: Path) -> None:
        first = redis_server(root, "redis1")
        self.nodes = {
            node.name: node for node in (first, redis_server(root, "redis2", replica_of=first.port))
        }
        self.sentinels = [
            sentinel(root, f"sentinel{n}", MASTER_NAME, first.port, SENTINEL_SETTINGS)
            for n in (1, 2, 3)
        ]

    @property
    def sentinel_addresses(self) -> str:
        return ",".join(s.address for s in self.sentinels)

    def start(self) -> None:
        first, *replicas = self.nodes.values()
        for node in self.nodes.values():
            node.start()
        # A Sentinel learns the replicas from the master's INFO, asked every 10 s: the
        # replica must be there at its first ask, or the group waits that long.
        for replica in replicas:
            self._wait_linked(replica.name, watch=[first, replica])
        for watcher in self.sentinels:
            watcher.start()

    def wait_ready(self) -> str:
        """The master, once every Sentinel knows the replicas and the other Sentinels."""
        for watcher in self.sentinels:
            answering = partial(watcher.ask, "PING")
            poll(f"{watcher.name} answering", answering, watch=_servers([watcher]))
        master = self.wait_for_master()
        replicas = len(self.nodes) - 1
        others = len(self.sentinels) - 1

        def all_know() -> bool:
            for watcher in self.sentinels:
                known = watcher.ask("SENTINEL MASTER", MASTER_NAME)
                if not isinstance(known, dict):
                    return False
                counts = (known.get("num-slaves"), known.get("num-other-sentinels"))
                if counts != (replicas, others):
                    return False
            return True

        poll("every Sentinel knowing the group", all_know)
        for name in self.nodes.keys() - {master}:
            self.wait_for_replica(name)
        return master

    # Roles

    def _named(self, address: object) -> str | None:
        if isinstance(address, (list, tuple)) and len(address) == 2:
            return next((n.name for n in self.nodes.values() if n.port == int(address[1])), None)
        return None

    def _agreed_master(self) -> str | None:
        """The node every running Sentinel names as master, if they agree."""
        named = {
            self._named(w.ask("SENTINEL GET-MASTER-ADDR-BY-NAME", MASTER_NAME))
            for w in self.sentinels
            if w.running()
        }
        return named.pop() if len(named) == 1 else None

    def master(self, *, timeout: float = 60.0) -> str:
        """The master as the Sentinels agree on it (waits out a failover)."""
        return poll("the Sentinels agreeing on a master", self._agreed_master, timeout=timeout)

    def replica(self) -> str:
        master = self.master()
        return next(name for name in self.nodes if name != master)

    def wait_for_master(self, *, not_on: str | None = None, timeout: float = 60.0) -> str:
        """The master the Sentinels agree on (not `not_on`), once it takes writes."""

        def writable() -> str | None:
            name = self._agreed_master()
            if name is None or name == not_on:
                return None
            answered = self.nodes[name].ask("SET", "coupon-ha:probe", "1")
            return name if answered is True else None

        return poll("a Redis master serving writes", writable, timeout=timeout)

    def _wait_linked(
        self, name: str, *, timeout: float = 60.0, watch: list[RedisProcess] | None = None
    ) -> None:
        def linked() -> bool:
            info = self.nodes[name].replication()
            return info.get("role") == "slave" and info.get("master_link_status") == "up"

        poll(f"{name} replicating", linked, timeout=timeout, watch=_servers(watch or []))

    def wait_for_replica(self, name: str, *, timeout: float = 60.0) -> None:
        """Until `name` is a replica of the agreed master, its link up."""
        master = self.master(timeout=timeout)

        def following() -> bool:
            info = self.nodes[name].replication()
            return info.get("master_port") == self.nodes[master].port

        self._wait_linked(name, timeout=timeout)
        poll(f"{name} following {master}", following, timeout=timeout)

    # Faults

    def kill(self, name: str) -> None:
        """kill -9 of one Redis server."""
        self.nodes[name].kill()

    def kill_master(self) -> str:
        """kill -9 of the master; its name. The Sentinels fail over after
        down-after-milliseconds: wait_for_master(not_on=it) returns the new one."""
        name = self.master()
        self.kill(name)
        return name

    def failover(self, *, timeout: float = 60.0) -> str:
        """`SENTINEL FAILOVER coupons`: the replica promoted, the old master turned into its
        replica. Returns the new master once it takes writes."""
        old = self.master()

        def accepted() -> bool:
            # Refused while another failover is under way or just done, or before the
            # Sentinel has a replica it deems fit: asked again until it takes it.
            return self.sentinels[0].ask("SENTINEL FAILOVER", MASTER_NAME) is True

        poll("a Sentinel taking the failover", accepted, timeout=timeout)
        return self.wait_for_master(not_on=old, timeout=timeout)

    def restart(self, name: str, *, timeout: float = 60.0) -> None:
        """Start a killed Redis again from its config file; returns once the Sentinels have
        made it a replica of the master and it has synced."""
        if self.nodes[name].running():
            raise StackError(f"{name} is running")
        self.nodes[name].start()
        self.wait_for_replica(name, timeout=timeout)

    def heal(self) -> str:
        """Every server and Sentinel running, the group settled; the master."""
        for process in [*self.nodes.values(), *self.sentinels]:
            if not process.running():
                process.start()
        return self.wait_ready()

    def stop(self) -> None:
        for process in [*self.sentinels, *self.nodes.values()]:
            process.stop()


def _servers(processes: list[RedisProcess]) -> list[Server]:
    return [process.server for process in processes if process.server is not None]
