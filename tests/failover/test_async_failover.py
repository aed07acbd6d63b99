"""The asynchronous option: a failover loses the commits the standby never received, and
the old primary, rewound by pg_rewind, comes back without them."""

from __future__ import annotations

import uuid

from devstack.ha.topology import HaStack
from devstack.ha.waiting import poll


def test_a_failover_loses_what_the_standby_never_got(async_ha: HaStack) -> None:
    postgres = async_ha.postgres
    table = f"ha_{uuid.uuid4().hex[:12]}"
    old, standby = postgres.primary(), postgres.standby()
    nodes = postgres.nodes
    assert nodes[old].sql(f"CREATE TABLE {table} AS SELECT 'kept' AS row") is not None
    poll("the standby replaying", lambda: nodes[standby].sql(f"SELECT row FROM {table}"))

    postgres.pause_walsender()
    acknowledged = nodes[old].sql(f"INSERT INTO {table} VALUES ('lost')")
    assert acknowledged is not None  # asynchronous: the commit did not wait for the standby
    postgres.kill_node(old)
    new = postgres.wait_for_writable_primary(not_on=old)

    assert new == standby
    assert nodes[new].sql(f"SELECT row FROM {table}") == "kept"
    postgres.start_node(old)  # its WAL went past the fork: Patroni rewinds it first
    assert postgres.role(old) == "replica"
    assert nodes[old].sql(f"SELECT row FROM {table}") == "kept"
