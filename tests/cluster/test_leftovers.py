"""What a cluster made is gone after it, however it ended: a failed test inside it, or
its owner killed (then the next start sweeps it). Nothing of a live run is touched."""

from __future__ import annotations

import subprocess
import sys

import pytest

from devstack.cluster import leftovers, network
from devstack.cluster.cluster import Cluster

# A cluster of one host whose owner waits to be killed, printing its prefix once made.
_OWNER = """
import sys
from devstack.cluster.cluster import Cluster
with Cluster(hosts=1, store_ports=[]) as cluster:
    print(cluster.prefix, flush=True)
    sys.stdin.read()
"""


@pytest.fixture(autouse=True)
def _allowed() -> None:
    reason = network.why_not_allowed()
    if reason:
        pytest.skip(reason)


def made_by(prefix: str) -> list[str]:
    return network.namespaces(prefix) + network.links(prefix)


def test_a_failure_inside_the_cluster_leaves_nothing() -> None:
    with pytest.raises(RuntimeError), Cluster(hosts=2, store_ports=[]) as cluster:
        prefix = cluster.prefix
        assert len(network.namespaces(prefix)) == 2
        raise RuntimeError("a test failed")
    assert made_by(prefix) == []


def test_a_killed_runs_hosts_are_swept_and_a_live_runs_are_not() -> None:
    with subprocess.Popen(
        [sys.executable, "-c", _OWNER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as owner:
        assert owner.stdout is not None
        dead = owner.stdout.readline().strip()
        owner.kill()
    assert network.namespaces(dead) != []  # killed: nothing of it ran its teardown

    with Cluster(hosts=1, store_ports=[]) as live:  # its start sweeps the dead run
        assert made_by(dead) == []
        assert len(network.namespaces(live.prefix)) == 1
        assert leftovers.remove_leftovers() == []  # a live run is nobody's leftover
        assert len(network.namespaces(live.prefix)) == 1
