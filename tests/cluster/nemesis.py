"""The faults a network of hosts has, one at a time on one gateway host: each begun,
waited on until it has done what it does, then healed.

A fault has done its work once HAProxy has taken the host out of rotation and every saga
that was in flight when it began has ended: the host's own sagas could not go on where
it was cut off (or paused, or killed), so they ended by other gateways' takeovers.
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
    Fault("cut from PostgreSQL", _cut_from(lambda s: s.database_url), _heal_network),
    Fault("cut from MongoDB", _cut_from(lambda s: s.mongo_url), _heal_network),
    Fault("cut from everything", lambda c, victim, s: victim.net.isolate(), _heal_network),
    Fault("paused past its lease", lambda c, victim, s: victim.pause(), GatewayHost.resume),
    # Restarted from the test's thread: the gateway dies with the thread that spawns it.
    Fault("killed and restarted", lambda c, victim, s: victim.kill(), GatewayHost.restart),
]
