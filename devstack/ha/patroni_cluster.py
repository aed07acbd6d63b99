"""Two Patroni nodes as one PostgreSQL cluster, and the faults tests inflict on it.

Roles come from Patroni's REST API; "serves writes" is a committed write through psql
(in synchronous mode its commit waits for the standby, as the service's would).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from devstack.ha import patroni_config
from devstack.ha.patroni import PatroniNode
from devstack.ha.proctable import Frozen
from devstack.ha.waiting import poll
from devstack.processes import Server, StackError, free_port

_WRITE = "SELECT txid_current()"  # takes a transaction id: a commit record, as any write


class PatroniCluster:
    def __init__(
        self, root: Path, etcd_hosts: list[str], *, synchronous: bool = True, size: int = 2
    ) -> None:
        self.synchronous = synchronous
        self.nodes = {
            name: PatroniNode(name, root / name, free_port(), free_port())
            for name in (f"pg{number}" for number in range(1, size + 1))
        }
        for node in self.nodes.values():
            settings = patroni_config.config(node, "coupons", etcd_hosts, synchronous=synchronous)
            node.write_config(settings)
        self._paused = Frozen()  # walreceivers and walsenders

    def url(self, database: str) -> str:
        """Every node in one URL; libpq, asyncpg and pgx connect to the one taking writes."""
        hosts = ",".join(node.pg_address for node in self.nodes.values())
        return (
            f"postgresql://{patroni_config.USER}@{hosts}/{database}?target_session_attrs=read-write"
        )

    def node_url(self, name: str, database: str = "postgres") -> str:
        return f"postgresql://{patroni_config.USER}@{self.nodes[name].pg_address}/{database}"

    def start(self) -> None:
        """Start every node; one bootstraps the cluster, the others clone it."""
        for node in self.nodes.values():
            node.start()

    def wait_ready(self) -> str:
        """The primary's name, once it takes writes and every other node replicates it.
        A Patroni that exits meanwhile ends the wait at once, with its log."""
        watch = [node.server for node in self.nodes.values() if node.server is not None]
        primary = self.wait_for_writable_primary(watch=watch)
        for name in self.nodes.keys() - {primary}:
            self.wait_for_replica(name, watch=watch)
        return primary

    def create_database(self, database: str) -> None:
        primary = self.nodes[self.wait_for_writable_primary()]
        if primary.sql(f"SELECT 1 FROM pg_database WHERE datname = '{database}'") == "1":
            return
        if primary.sql(f'CREATE DATABASE "{database}"') is None:
            raise StackError(f"patroni: creating database {database} on {primary.name} failed")

    # Roles

    def role(self, name: str) -> str | None:
        """The node's role as its Patroni says: primary, replica, or None when down."""
        return self.nodes[name].role()

    def primary(self, *, timeout: float = 60.0) -> str:
        """The one node Patroni calls primary (waits out a transition)."""

        def single() -> str | None:
            found = [name for name in self.nodes if self.role(name) == "primary"]
            return found[0] if len(found) == 1 else None

        return poll("a single PostgreSQL primary", single, timeout=timeout)

    def standby(self, *, timeout: float = 60.0) -> str:
        """A node Patroni calls replica, its PostgreSQL running."""
        return poll(
            "a PostgreSQL standby",
            lambda: next((name for name in self.nodes if self.role(name) == "replica"), None),
            timeout=timeout,
        )

    def wait_for_writable_primary(
        self, *, not_on: str | None = None, timeout: float = 60.0, watch: Sequence[Server] = ()
    ) -> str:
        """The node that commits a write (not `not_on`, the one that just lost the role)."""

        def writable() -> str | None:
            for name, node in self.nodes.items():
                if name != not_on and node.running() and node.sql(_WRITE) is not None:
                    return name
            return None

        return poll("a PostgreSQL primary serving writes", writable, timeout=timeout, watch=watch)

    def wait_for_replica(
        self, name: str, *, timeout: float = 60.0, watch: Sequence[Server] = ()
    ) -> None:
        """Until `name` streams from the primary; in synchronous mode, until it is the sync
        standby both for PostgreSQL and in etcd (Patroni writes the latter a loop later, and
        refuses a switchover to it until then)."""
        wanted = "streaming|sync" if self.synchronous else "streaming|"

        def replicating() -> bool:
            status = self.nodes[name].status() or {}
            if status.get("state") != "running" or status.get("role") != "replica":
                return False
            if self.synchronous and not status.get("sync_standby"):
                return False
            for other, node in self.nodes.items():
                if other != name and self.role(other) == "primary":
                    found = node.sql(
                        "SELECT state, sync_state FROM pg_stat_replication"
                        f" WHERE application_name = '{name}'"
                    )
                    return found is not None and found.startswith(wanted)
            return False

        poll(f"{name} replicating", replicating, timeout=timeout, watch=watch)

    # Faults

    def switchover(self, candidate: str | None = None, *, timeout: float = 60.0) -> str:
        """Patroni's planned handover (`patronictl switchover`): the primary stops, the
        candidate (by default the standby) promotes, the old primary follows it. Returns
        the new primary once it serves writes."""
        leader = self.primary()
        candidate = candidate or next(name for name in self.nodes if name != leader)
        code, body = self.nodes[leader].api(
            "POST", "/switchover", {"leader": leader, "candidate": candidate}
        )
        if code != 200:
            raise StackError(f"patroni: switchover {leader} -> {candidate}: {code} {body}")
        return self.wait_for_writable_primary(not_on=leader, timeout=timeout)

    def promote(self, name: str, *, timeout: float = 60.0) -> str:
        """Patroni's manual failover to `name` (`patronictl failover`): works with the
        primary down too. Returns `name` once it serves writes."""
        asked = next((node for node in self.nodes.values() if node.running()), None)
        if asked is None:
            raise StackError("patroni: no node runs to ask for a failover")
        code, body = asked.api("POST", "/failover", {"candidate": name})
        if code != 200:
            raise StackError(f"patroni: failover to {name}: {code} {body}")
        return poll(
            f"{name} serving writes",
            lambda: name if self.nodes[name].sql(_WRITE) else None,
            timeout=timeout,
        )

    def kill_postgres(self, name: str) -> None:
        """kill -9 of `name`'s postmaster and backends. Its Patroni lives: a primary's hands
        over to the standby at once, then starts its PostgreSQL again as a replica."""
        self.nodes[name].kill_postgres()

    def kill_node(self, name: str) -> None:
        """kill -9 of `name`'s Patroni and PostgreSQL: the node is gone. A primary's leader
        key lapses after Patroni's ttl; then the standby promotes."""
        self.nodes[name].kill()

    def kill_primary(self) -> str:
        """kill_node on the primary; its name."""
        name = self.primary()
        self.kill_node(name)
        return name

    def start_node(self, name: str, *, timeout: float = 90.0) -> None:
        """Start a killed node's Patroni again; returns once it replicates the primary
        (Patroni rewinds an old primary's divergent WAL with pg_rewind first)."""
        node = self.nodes[name]
        if not node.running():
            node.kill_postgres()  # one left over from a node killed by hand
            node.start()
        self.wait_for_replica(name, timeout=timeout)

    def pause_walreceiver(self, name: str | None = None) -> str:
        """SIGSTOP the standby's walreceiver: it lags, WAL piles up on the primary, and in
        synchronous mode commits wait for it. Resume it before the standby must promote (a
        promotion waits for the walreceiver to end). Returns the standby's name.

        What the primary sent meanwhile waits in the kernel's socket buffer and arrives on
        resume, even after the primary died: for a standby that truly misses commits, use
        pause_walsender."""
        name = name or self.standby()
        self._pause(self.nodes[name].pids_titled("walreceiver"), f"{name}'s walreceiver")
        return name

    def pause_walsender(self) -> str:
        """SIGSTOP the primary's walsenders: the WAL stays on the primary. In asynchronous
        mode its commits are still acknowledged; kill the primary then and the standby
        promotes without them (lost acknowledged writes). Returns the primary's name."""
        name = self.primary()
        self._pause(self.nodes[name].pids_titled("walsender"), f"{name}'s walsender")
        return name

    def _pause(self, pids: set[int], what: str) -> None:
        if not pids:
            raise StackError(f"patroni: {what} is not running")
        self._paused.freeze(pids)

    def resume_replication(self) -> None:
        """SIGCONT every walreceiver and walsender paused (those still there)."""
        self._paused.thaw()

    def heal(self) -> str:
        """Every node running and replicating again, after whatever a test did; the primary."""
        self.resume_replication()
        for node in self.nodes.values():
            if not node.running():
                node.kill_postgres()
                node.start()
        return self.wait_ready()

    def stop(self) -> None:
        self.resume_replication()
        for node in self.nodes.values():
            node.stop()
