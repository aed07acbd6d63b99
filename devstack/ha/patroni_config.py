"""Patroni's configuration for one node of the HA stack (YAML; JSON is YAML too).

What makes a failover quick enough for tests: a 10 s leader key renewed every second,
a crashed primary handed over at once rather than restarted in place
(primary_start_timeout 0), and pg_rewind to bring an old primary back as a replica.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from devstack.servers import postgres_bin_dir

if TYPE_CHECKING:
    from devstack.ha.patroni import PatroniNode

USER = "postgres"  # PostgreSQL refuses to run as root; Patroni runs it as itself
TTL, LOOP_WAIT, RETRY_TIMEOUT = 10, 1, 4  # Patroni's rule: loop_wait + 2 * retry_timeout <= ttl


def config(
    node: PatroniNode, scope: str, etcd_hosts: list[str], *, synchronous: bool
) -> dict[str, Any]:
    """Patroni's configuration (YAML; JSON is YAML too)."""
    dcs = {
        "ttl": TTL,
        "loop_wait": LOOP_WAIT,
        "retry_timeout": RETRY_TIMEOUT,
        "primary_start_timeout": 0,
        # Tests of lost writes promote a standby that lags: never refuse it for its lag.
        "maximum_lag_on_failover": 1 << 40,
        "synchronous_mode": synchronous,
        "postgresql": {
            "use_pg_rewind": True,
            "use_slots": True,
            "parameters": {
                "max_connections": 200,
                # A process kill loses nothing the OS has; a machine crash is not tested.
                "fsync": "off",
                "synchronous_commit": "on",  # with synchronous_mode: a commit waits for the standby
            },
        },
    }
    return {
        "scope": scope,
        "name": node.name,
        "namespace": "/coupon-ha/",
        "log": {"level": "INFO"},
        "restapi": {"listen": node.rest_address, "connect_address": node.rest_address},
        "etcd3": {"hosts": etcd_hosts},
        "bootstrap": {"dcs": dcs, "initdb": [{"encoding": "UTF8"}, {"locale": "C"}, "no-sync"]},
        "postgresql": {
            "listen": node.pg_address,
            "connect_address": node.pg_address,
            "data_dir": str(node.data_dir),
            "bin_dir": str(postgres_bin_dir()),
            "pgpass": str(node.home / "pgpass"),
            "authentication": {
                "superuser": {"username": USER},
                "replication": {"username": "replicator"},
            },
            "parameters": {
                # TCP only: a socket path under a deep folder is too long for the kernel.
                "unix_socket_directories": "",
                # Shared memory segments in the data dir, not /dev/shm: a node killed with
                # -9 leaves them behind, and the folder's removal takes them along.
                "dynamic_shared_memory_type": "mmap",
                # bench --explain counts statements (make test-ha runs it here too).
                "shared_preload_libraries": "pg_stat_statements",
            },
            "pg_hba": [
                "host all all 127.0.0.1/32 trust",
                "host replication all 127.0.0.1/32 trust",
            ],
            # An old primary whose rewind fails is cloned anew rather than left out.
            "remove_data_directory_on_rewind_failure": True,
            "remove_data_directory_on_diverged_timelines": True,
        },
        "watchdog": {"mode": "off"},
    }
