"""The faults a network of hosts has, one at a time on one gateway host: each begun,
waited on until it has done what it does, then healed.

A fault has done its work once HAProxy has taken the host out of rotation. Where the host
can drive none of its sagas on (cut from everything, paused, killed), the fault is begun
while the host has sagas in flight, and is healed only once each of them has ended by
another gateway's takeover.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from devstack.cluster.cluster import Cluster
from devstack.cluster.gateway_host import GatewayHost
from orchestrator.settings import Settings


@dataclass(frozen=True)
class Fault:
    name: str
    begin: Callable[[Cluster, GatewayHost, Settings], None]
    heal: Callable[[GatewayHost], None]
    # The share of requests outside the fault that must be answered 200/409.
    outside_availability: float = 0.99
    # The host can drive none of its sagas on: begun only while it has some in flight,
    # which other gateways must take over.
    takes_over: bool = False
    # The fault is the host paused (SIGSTOP), kept so until the heal.
    pauses: bool = False


def _cut_from(*urls: Callable[[Settings], str]) -> Callable[[Cluster, GatewayHost, Settings], None]:
    def begin(cluster: Cluster, victim: GatewayHost, settings: Settings) -> None:
        assert cluster.bridge is not None
        fronts = [cluster.fronts[urlsplit(url(settings)).port or 0] for url in urls]
        victim.net.cut_from(cluster.bridge.address, fronts)

    return begin


def _heal_network(victim: GatewayHost) -> None:
    victim.net.heal()


FAULTS = [
    Fault("cut from Redis", _cut_from(lambda s: s.redis_url), _heal_network),
    # Known short (docs/CLUSTER.md): for about a second after the heal the host, back in
    # rotation, refuses claims: its PostgreSQL connections cut mid-query wait out TCP's
    # retransmission backoff. Refusals that took nothing, but 3-10% of the requests.
    Fault("cut from PostgreSQL", _cut_from(lambda s: s.database_url), _heal_network, 0.85),
    Fault("cut from MongoDB", _cut_from(lambda s: s.mongo_url), _heal_network),
    # Cut from PostgreSQL too: the same short second after the heal, on fewer connections.
    Fault(
        "cut from everything",
        lambda c, victim, s: victim.net.isolate(),
        _heal_network,
        outside_availability=0.95,
        takes_over=True,
    ),
    Fault(
        "paused past its lease",
        lambda c, victim, s: victim.pause(),
        GatewayHost.resume,
        takes_over=True,
        pauses=True,
    ),
    # Restarted from the test's thread: the gateway dies with the thread that spawns it.
    Fault(
        "killed and restarted",
        lambda c, victim, s: victim.kill(),
        GatewayHost.restart,
        takes_over=True,
    ),
]
