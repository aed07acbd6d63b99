"""The saga log through Redis Sentinel (REDIS_SENTINELS, REDIS_SENTINEL_MASTER): it
follows the master the sentinels name through a switchover (SENTINEL FAILOVER, the old
master kept as a replica) and a killed master, with no restart. A write meanwhile lands
or is a 503 (StoreUnavailable), never a 500.

Each test has a master, a replica and three sentinels of its own (tests/support/sentinels.py).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from orchestrator.bootstrap import Stores, redis_client, redis_saga_log
from orchestrator.settings import Settings
from sagas.errors import StoreUnavailable
from sagas.records import SagaRecord, SagaStatus
from services.mongo_client import CurrentMongoClient
from services.redis_keys import RedisKeys
from services.saga_log import RedisSagaLog
from tests.support.cli import coupon_saga
from tests.support.sentinels import SentinelGroup, sentinel_group
from tests.support.settings import changed
from tests.support.waiting import eventually


@pytest.fixture
async def group() -> AsyncIterator[SentinelGroup]:
    async with sentinel_group() as started:
        yield started


def on_sentinels(settings: Settings, group: SentinelGroup, client_name: str = "") -> Settings:
    """The settings with Sentinel: REDIS_URL's host unused, its db and options kept."""
    url = group.redis_url + (f"?client_name={client_name}" if client_name else "")
    return changed(
        settings,
        {
            "redis_url": url,
            "redis_sentinels": group.addresses,
            "redis_sentinel_master": group.name,
            "redis_key_prefix": f"test-{uuid.uuid4().hex[:12]}:",
            "redis_pool_size": 4,
            "startup_wait_seconds": 0,
        },
    )


def saga(saga_id: str) -> SagaRecord:
    now = time.time()
    return SagaRecord(
        saga_id=saga_id,
        name="claim",
        payload={"user_id": "alice", "coupon_name": "PROMO"},
        status=SagaStatus.RUNNING,
        step="reserve",
        created_at=now,
        updated_at=now,
    )


class Writes:
    """New sagas written one after another, as a sale writes them."""

    def __init__(self, saga_log: RedisSagaLog) -> None:
        self.saga_log = saga_log
        self.landed: list[str] = []

    async def one_lands(self) -> bool:
        """Write one; a refusal must be a StoreUnavailable (a 503)."""
        record = saga(str(uuid.uuid4()))
        try:
            await self.saga_log.create(record, [])
        except StoreUnavailable:
            return False
        self.landed.append(record.saga_id)
        return True

    async def one_lands_on(self, port: int, keys: RedisKeys) -> bool:
        """Write one, and find it on the node at `port`: a write the old master took after
        the switch lands too, and is lost when that node turns replica."""
        return await self.one_lands() and await on_node(port, keys, self.landed[-1:]) == 1


async def on_node(port: int, keys: RedisKeys, saga_ids: list[str]) -> int:
    """How many of the sagas the node at `port` has."""
    node = aioredis.Redis(port=port, decode_responses=True)
    try:
        return int(await node.exists(*(keys.saga(saga_id) for saga_id in saga_ids)))
    finally:
        await node.aclose()


async def clients(port: int, name: str) -> list[dict[str, str]]:
    """The connections named `name` the node at `port` has (CLIENT LIST)."""
    node = aioredis.Redis(port=port, decode_responses=True)
    try:
        return [client for client in await node.client_list() if client["name"] == name]
    finally:
        await node.aclose()


@pytest.mark.parametrize("batching", [True, False], ids=["batched", "one-by-one"])
async def test_the_saga_log_follows_a_switchover(settings, group, batching):
    """The old master stays up, taking writes until the sentinels tell it to replicate
    the new one (seconds later), and then drops what it took. The pool asks the
    sentinels every second, and moves its connections to the new master before that."""
    own = changed(on_sentinels(settings, group), {"store_batching": batching})
    keys = RedisKeys(own.redis_key_prefix)
    async with redis_client(own) as client:
        saga_log = redis_saga_log(own, client)
        await saga_log.warm_up(own.redis_pool_size)  # every connection open, on the master
        writes = Writes(saga_log)
        assert await writes.one_lands()

        old = await group.master_port()
        new = await group.failover()

        await eventually(lambda: writes.one_lands_on(new, keys))
        assert await group.role(old) == "master"  # moved before the old one was told
        moved = len(writes.landed)
        for _ in range(5):
            assert await writes.one_lands()
        assert await on_node(new, keys, writes.landed[moved - 1 :]) == 6


async def test_a_demoted_master_refusing_a_write_sends_the_pool_to_the_new_one(settings, group):
    """The old master told to replicate the new one before the pool asked the sentinels
    again: every pooled connection to it refuses its next write (READONLY), asks the
    sentinels, and the write goes to the new master (once the sentinel asked knows of
    it: sentinels learn the new master from each other within seconds)."""
    own = on_sentinels(settings, group)
    keys = RedisKeys(own.redis_key_prefix)
    async with redis_client(own) as client:
        saga_log = redis_saga_log(own, client)
        await saga_log.warm_up(own.redis_pool_size)
        old = await group.master_port()
        node = aioredis.Redis(port=old)
        try:
            new = await group.failover()
            await node.replicaof("127.0.0.1", new)  # what the sentinels do, seconds later
        finally:
            await node.aclose()

        writes = Writes(saga_log)
        await eventually(writes.one_lands)
        for _ in range(5):
            assert await writes.one_lands()
        assert await on_node(new, keys, writes.landed) == 6


async def test_the_saga_log_follows_a_killed_master(settings, group):
    own = on_sentinels(settings, group)
    keys = RedisKeys(own.redis_key_prefix)
    async with redis_client(own) as client:
        saga_log = redis_saga_log(own, client)
        await saga_log.warm_up(own.redis_pool_size)
        writes = Writes(saga_log)
        assert await writes.one_lands()

        new = await group.kill_master()
        await eventually(writes.one_lands)
        for _ in range(5):
            assert await writes.one_lands()

        # The first write may be lost with the master: Redis replicates asynchronously.
        assert await on_node(new, keys, writes.landed[1:]) == len(writes.landed) - 1


async def test_no_connection_is_kept_to_a_demoted_master(settings, group):
    """A connection in use when the pool learns of the new master (here: blocked in a
    read on the old master) is dropped when it comes back, not kept to serve the next
    reads from a node that is about to become a replica."""
    name = f"saga-log-{uuid.uuid4().hex[:8]}"
    own = on_sentinels(settings, group, client_name=name)
    keys = RedisKeys(own.redis_key_prefix)
    stream = f"{own.redis_key_prefix}blocked"
    async with redis_client(own) as client:
        await redis_saga_log(own, client).warm_up(2)
        old = await group.master_port()
        blocked = asyncio.create_task(client.xread({stream: "$"}, block=4000))

        async def blocked_on_the_old_master() -> bool:
            return any(c["cmd"] == "xread" for c in await clients(old, name))

        await eventually(blocked_on_the_old_master)
        new = await group.failover()
        writes = Writes(redis_saga_log(own, client))
        await eventually(lambda: writes.one_lands_on(new, keys))
        node = aioredis.Redis(port=old)
        try:
            await node.xadd(stream, {"wake": "up"})  # the old master still takes it
        finally:
            await node.aclose()
        assert await blocked

        assert await clients(old, name) == []


async def test_scripts_are_loaded_again_on_a_new_master_without_them(settings, group):
    """A replica promoted may not have the scripts the old master had loaded (a restart
    empties the cache too): every write, batched or not, and a takeover load them again."""
    own = on_sentinels(settings, group)
    async with redis_client(own) as client:
        batched = redis_saga_log(own, client)
        one_by_one = redis_saga_log(changed(own, {"store_batching": False}), client)
        await batched.warm_up(own.redis_pool_size)
        new = await group.failover()
        node = aioredis.Redis(port=new)
        try:
            await node.script_flush()
        finally:
            await node.aclose()

        await eventually(Writes(batched).one_lands)
        record = saga(str(uuid.uuid4()))
        await one_by_one.create(record, [])
        await client.script_flush()
        await client.zadd(f"{own.redis_key_prefix}sagas:in-flight", {record.saga_id: 0})
        taken = await one_by_one.acquire(record.saga_id, "recoverer", parked=False)
        assert taken is not None and taken.epoch == record.epoch + 1


async def test_readiness_and_the_replay_tool_find_the_master(settings, group, pg, mongo):
    own = on_sentinels(settings, group)
    async with redis_client(own) as client:
        new = await group.failover()
        writes = Writes(redis_saga_log(own, client))
        await eventually(lambda: writes.one_lands_on(new, RedisKeys(own.redis_key_prefix)))
        stores = Stores(pg, CurrentMongoClient(mongo.client, mongo.name), client)

        async def redis_answers() -> bool:
            return (await stores.answering(2.0))["redis"]

        await eventually(redis_answers)

    code, out, err = await coupon_saga(own, "list")
    assert code == 0, err
    assert writes.landed[-1] in out
