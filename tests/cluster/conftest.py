"""Three gateway hosts in network namespaces behind HAProxy, on the session's stores
(devstack/cluster), started once for the module and healed before each test.

Skipped, saying why, where this process cannot make network namespaces (not root, no
`ip netns`, no nft or HAProxy)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest
import redis.asyncio as aioredis

from devstack.cluster.cluster import Cluster
from devstack.cluster.network import why_not_allowed
from orchestrator.bootstrap import redis_client, redis_saga_log
from orchestrator.settings import Settings
from services.redis_keys import RedisKeys
from services.saga_log import RedisSagaLog
from tests.support.apart import own_keys
from tests.support.servers import settings_env
from tests.support.settings import changed

HOSTS = 3
# A stuck saga is taken over 3 s after its driver's last write; hold settling is off (the
# session's PostgreSQL holds other tests' holds, which this saga log does not know).
TIMINGS = {
    "saga_lease_seconds": 3.0,
    "saga_retry_seconds": 2.0,
    "store_timeout_seconds": 1.0,
    "step_timeout_seconds": 2.0,
    "recovery_interval_seconds": 0.2,
    "hold_settle_seconds": 3600.0,
}


@pytest.fixture(scope="module")
def cluster_settings(settings: Settings) -> Settings:
    """The settings of the cluster's gateways as this process reaches their stores: a saga
    log of the module's own."""
    return changed(
        settings,
        {
            **TIMINGS,
            "redis_key_prefix": own_keys().prefix,
            "pg_max_connections": 10,  # per gateway: three and the tests' pools fit
        },
    )


@pytest.fixture(scope="module")
def cluster_module(cluster_settings: Settings, service: object) -> Iterator[Cluster]:
    reason = why_not_allowed()
    if reason:
        pytest.skip(reason)
    urls = [cluster_settings.database_url, cluster_settings.mongo_url, cluster_settings.redis_url]
    with Cluster(hosts=HOSTS, store_ports=[urlsplit(url).port or 0 for url in urls]) as cluster:
        on_bridge = changed(
            cluster_settings,
            {
                "database_url": cluster.reach(cluster_settings.database_url),
                "mongo_url": cluster.reach(cluster_settings.mongo_url),
                "redis_url": cluster.reach(cluster_settings.redis_url),
            },
        )
        cluster.start_gateways(settings_env(on_bridge))
        yield cluster


@pytest.fixture
async def cluster(cluster_module: Cluster) -> Cluster:
    """Every host on the network, running and in rotation, whatever the last test did."""
    for gateway in cluster_module.gateways:
        gateway.net.heal()
        gateway.resume()
        if not gateway.running:
            gateway.restart()  # from this thread: the gateway dies with the one that spawns it
    for gateway in cluster_module.gateways:
        await asyncio.to_thread(gateway.wait_healthy)
    await asyncio.to_thread(cluster_module.wait_in_rotation, *cluster_module.gateways)
    return cluster_module


@dataclass(frozen=True)
class SagaLogView:
    """The cluster's saga log, and who drives each saga in it."""

    log: RedisSagaLog
    redis: aioredis.Redis
    keys: RedisKeys

    async def in_flight(self) -> set[str]:
        """The sagas in flight, from their index: one read, however long the log."""
        return {str(saga_id) for saga_id in await self.redis.zrange(self.keys.in_flight, 0, -1)}

    async def in_flight_driven_by(self, pids: set[int]) -> set[str]:
        """The sagas in flight whose driver is one of these processes (owner host:pid)."""
        found = set()
        for saga_id in await self.in_flight():
            owner = await self.redis.hget(self.keys.saga(saga_id), "owner")
            if owner and int(str(owner).rpartition(":")[2]) in pids:
                found.add(saga_id)
        return found


@pytest.fixture
async def saga_log(cluster_settings: Settings) -> AsyncIterator[SagaLogView]:
    async with redis_client(cluster_settings) as client:
        keys = RedisKeys(cluster_settings.redis_key_prefix)
        yield SagaLogView(redis_saga_log(cluster_settings, client), client, keys)
