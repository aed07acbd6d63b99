"""The whole HA topology as one context manager: etcd x3, Patroni x2 (PostgreSQL),
Redis primary + replica + 3 Sentinels, FerretDB on the Patroni cluster.

    with HaStack() as ha:
        ha.urls.as_env()              # DATABASE_URL, MONGO_URL, REDIS_SENTINELS, ...
        ha.postgres.switchover()      # and the other faults of PatroniCluster,
        ha.redis.failover()           # SentinelGroup
        ha.ferretdb.kill()

Every process it started is stopped on the way out, whatever the way out; what a killed
earlier run left behind is removed at the start (devstack/ha/leftovers.py). Like every
devstack server, each process dies with the thread that started it (PR_SET_PDEATHSIG):
call start_node/restart from that thread, not from a worker thread that may end first.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from devstack.ha import leftovers
from devstack.ha.etcd import EtcdCluster, start_etcd
from devstack.ha.ferretdb import DATABASE as FERRETDB_DATABASE
from devstack.ha.ferretdb import FerretDB
from devstack.ha.patroni_cluster import PatroniCluster
from devstack.ha.sentinel import MASTER_NAME, SentinelGroup
from devstack.processes import free_port

SERVICE_DATABASE = "coupons"


@dataclass(frozen=True)
class HaUrls:
    database_url: str
    mongo_url: str
    redis_sentinels: str
    redis_sentinel_master: str
    # The master when asked. The service takes only user, password, db and TLS from it
    # (the Sentinels name the node); a tool reading the saga log directly, as the tests
    # do, goes there.
    redis_url: str

    def as_env(self) -> dict[str, str]:
        return {
            "DATABASE_URL": self.database_url,
            "MONGO_URL": self.mongo_url,
            "REDIS_SENTINELS": self.redis_sentinels,
            "REDIS_SENTINEL_MASTER": self.redis_sentinel_master,
            "REDIS_URL": self.redis_url,
        }


class HaStack:
    """`synchronous`: Patroni's synchronous_mode (a commit waits for the standby, so a
    failover loses no acknowledged write); False replicates asynchronously, for tests of
    a failover that does lose some."""

    def __init__(self, *, synchronous: bool = True) -> None:
        self.synchronous = synchronous
        self.root: Path | None = None
        self._etcd: EtcdCluster | None = None
        self._postgres: PatroniCluster | None = None
        self._redis: SentinelGroup | None = None
        self._ferretdb: FerretDB | None = None

    @property
    def postgres(self) -> PatroniCluster:
        assert self._postgres is not None, "the stack is not started"
        return self._postgres

    @property
    def redis(self) -> SentinelGroup:
        assert self._redis is not None, "the stack is not started"
        return self._redis

    @property
    def ferretdb(self) -> FerretDB:
        assert self._ferretdb is not None, "the stack is not started"
        return self._ferretdb

    @property
    def urls(self) -> HaUrls:
        return HaUrls(
            self.postgres.url(SERVICE_DATABASE),
            self.ferretdb.url,
            self.redis.sentinel_addresses,
            MASTER_NAME,
            f"redis://{self.redis.nodes[self.redis.master()].address}/0",
        )

    def __enter__(self) -> HaStack:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def _start(self) -> None:
        self.root = root = leftovers.new_root()
        self._etcd = start_etcd(root)
        self._postgres = PatroniCluster(root, self._etcd.hosts, synchronous=self.synchronous)
        self._redis = SentinelGroup(root)
        self.postgres.start()  # bootstraps while Redis starts
        self.redis.start()
        self.postgres.wait_ready()
        for database in (SERVICE_DATABASE, FERRETDB_DATABASE):
            self.postgres.create_database(database)
        ferretdb_url = self.postgres.url(FERRETDB_DATABASE)
        self._ferretdb = FerretDB(root / "ferretdb", ferretdb_url, free_port())
        self.ferretdb.start()
        self.redis.wait_ready()

    def heal(self) -> None:
        """Everything running and replicating again, whatever a test killed or paused."""
        self.postgres.heal()
        self.redis.heal()
        self.ferretdb.restart()

    def close(self) -> None:
        """Stop everything: FerretDB, the Redis group, the PostgreSQL nodes, then etcd
        (Patroni needs it to stop cleanly); then kill whatever still runs from the folder."""
        try:
            for part in (self._ferretdb, self._redis, self._postgres, self._etcd):
                if part is not None:
                    part.stop()
        finally:
            if self.root is not None:
                leftovers.end(self.root)
