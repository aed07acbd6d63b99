"""The HA harness itself: roles found, planned and unplanned handovers of PostgreSQL and
Redis with each old primary back as a replica, and FerretDB following PostgreSQL."""

from __future__ import annotations

import subprocess
import time
import uuid

import asyncpg
from pymongo import MongoClient
from pymongo.errors import PyMongoError

from devstack.ha.topology import HaStack
from devstack.ha.waiting import poll
from tests.support.ha_clients import sentinel_master


def table_name() -> str:
    return f"ha_{uuid.uuid4().hex[:12]}"


async def port_behind(database_url: str) -> int:
    """The port of the server the service's DATABASE_URL connects to."""
    connection = await asyncpg.connect(database_url, timeout=10)
    try:
        return int(await connection.fetchval("SELECT inet_server_port()"))
    finally:
        await connection.close()


def sentinel_master_port(ha: HaStack) -> int:
    """The port of the master a Sentinel-aware client (as the service's) writes to."""
    with sentinel_master(ha.urls.redis_sentinels, ha.urls.redis_sentinel_master) as master:
        master.set("coupon-ha:test", "1")
        return int(master.connection_pool.get_master_address()[1])


def mongo_writes(ha: HaStack) -> bool:
    """A write through FerretDB lands (in PostgreSQL, on whichever node is primary)."""
    with MongoClient(ha.urls.mongo_url, serverSelectionTimeoutMS=2000) as client:
        try:
            client.ha_test.probes.insert_one({"at": time.time()})
        except PyMongoError:
            return False
    return True


async def test_roles_are_found_and_the_urls_reach_the_primaries(ha: HaStack) -> None:
    primary, standby = ha.postgres.primary(), ha.postgres.standby()
    assert {primary, standby} == set(ha.postgres.nodes)
    assert await port_behind(ha.urls.database_url) == ha.postgres.nodes[primary].pg_port

    master, replica = ha.redis.master(), ha.redis.replica()
    assert {master, replica} == set(ha.redis.nodes)
    assert sentinel_master_port(ha) == ha.redis.nodes[master].port

    assert mongo_writes(ha)


async def test_a_switchover_moves_the_primary_and_the_old_one_follows(ha: HaStack) -> None:
    old = ha.postgres.primary()

    new = ha.postgres.switchover()

    assert new != old
    ha.postgres.wait_for_replica(old)
    assert ha.postgres.role(old) == "replica"
    assert await port_behind(ha.urls.database_url) == ha.postgres.nodes[new].pg_port
    poll("FerretDB writing to the new primary", lambda: mongo_writes(ha))


def test_a_sentinel_failover_moves_the_master(ha: HaStack) -> None:
    old = ha.redis.master()

    new = ha.redis.failover()

    assert new != old
    ha.redis.wait_for_replica(old)
    assert sentinel_master_port(ha) == ha.redis.nodes[new].port


def test_a_killed_primary_is_replaced_and_rejoins_once_restarted(ha: HaStack) -> None:
    table = table_name()
    old = ha.postgres.primary()
    written = ha.postgres.nodes[old].sql(f"CREATE TABLE {table} AS SELECT 1 AS acknowledged")
    assert written is not None

    ha.postgres.kill_node(old)
    started = time.monotonic()
    new = ha.postgres.wait_for_writable_primary(not_on=old)
    print(f"\nkill -9 of {old}: {new} took writes after {time.monotonic() - started:.1f} s")

    assert new != old
    # Synchronous mode: what the old primary acknowledged, the new one has.
    assert ha.postgres.nodes[new].sql(f"SELECT acknowledged FROM {table}") == "1"
    ha.postgres.start_node(old)
    assert ha.postgres.role(old) == "replica"
    poll(f"{old} replaying", lambda: ha.postgres.nodes[old].sql(f"SELECT 1 FROM {table}"))


def test_a_crashed_postgres_hands_over_and_patroni_brings_it_back(ha: HaStack) -> None:
    old = ha.postgres.primary()

    ha.postgres.kill_postgres(old)  # Patroni lives: it hands over at once, no ttl to wait out
    new = ha.postgres.wait_for_writable_primary(not_on=old)

    assert new != old
    ha.postgres.wait_for_replica(old)  # restarted by its own Patroni, rewound if need be


def test_a_killed_redis_master_is_replaced_and_rejoins_once_restarted(ha: HaStack) -> None:
    old = ha.redis.kill_master()
    started = time.monotonic()
    new = ha.redis.wait_for_master(not_on=old)
    print(f"\nkill -9 of {old}: {new} took writes after {time.monotonic() - started:.1f} s")

    assert new != old
    ha.redis.restart(old)
    assert ha.redis.nodes[old].replication()["role"] == "slave"


def test_a_paused_walreceiver_holds_synchronous_commits_until_resumed(ha: HaStack) -> None:
    table = table_name()
    primary = ha.postgres.nodes[ha.postgres.primary()]
    assert primary.sql(f"CREATE TABLE {table} (n int)") is not None
    ha.postgres.pause_walreceiver()

    insert = subprocess.Popen(primary.psql(f"INSERT INTO {table} VALUES (1)"))
    try:
        waiting = (
            "SELECT 1 FROM pg_stat_activity"
            f" WHERE wait_event = 'SyncRep' AND query LIKE '%{table}%'"
        )
        poll("the commit waiting for the standby", lambda: primary.sql(waiting) == "1")
        assert insert.poll() is None

        ha.postgres.resume_replication()
        assert insert.wait(timeout=60) == 0
    finally:
        ha.postgres.resume_replication()
        insert.kill()
        insert.wait()


def test_ferretdb_killed_and_restarted(ha: HaStack) -> None:
    ha.ferretdb.kill()
    assert not mongo_writes(ha)

    ha.ferretdb.restart()

    assert mongo_writes(ha)
