"""Durable saga-log writes (REDIS_WAIT_REPLICAS): each round trip of fenced writes ends
with a WAIT for the replicas. A write they have not taken in time still stands on the
master, and the shortfall is told, not raised.

Each test has a master and a replica of its own (tests/support/redis_replicas.py).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import pytest
import redis.asyncio as aioredis

from devstack.processes import Server
from sagas.records import SagaRecord, SagaStatus
from services.batched import BatchedSagaLog
from services.redis_keys import RedisKeys
from services.replica_wait import ReplicaWait
from services.saga_log import RedisSagaLog
from tests.support.apart import own_keys
from tests.support.redis_replicas import ReplicatedRedis, port_of, replicated_redis
from tests.unit.test_replica_wait import Told

# A WAIT answers as soon as the replica has the writes: a long timeout costs a healthy
# replica nothing, and leaves room for one slowed by a busy machine.
WAIT_MS = 2000
# Waits that run their course, the replica stalled.
SHORT_WAIT_MS = 100


@pytest.fixture
async def replicated() -> AsyncIterator[ReplicatedRedis]:
    async with replicated_redis() as started:
        yield started


@pytest.fixture
async def master(replicated: ReplicatedRedis) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis(port=port_of(replicated.master), decode_responses=True)
    yield client
    await client.aclose()


def durable_log(
    client: aioredis.Redis, keys: RedisKeys, told: Told, batching: bool, wait_ms: int = WAIT_MS
) -> RedisSagaLog:
    kind = BatchedSagaLog if batching else RedisSagaLog
    return kind(
        client,
        keys=keys,
        lease_seconds=60.0,
        retention_seconds=3600,
        replica_wait=ReplicaWait(1, wait_ms, told),
    )


def new_saga() -> SagaRecord:
    now = time.time()
    return SagaRecord(
        saga_id=str(uuid.uuid4()),
        name="claim",
        payload={"user_id": "alice", "coupon_name": "PROMO"},
        status=SagaStatus.RUNNING,
        step="reserve",
        created_at=now,
        updated_at=now,
    )


@contextmanager
def stopped(server: Server) -> Iterator[None]:
    """SIGSTOP: the replica stays connected and acknowledges nothing, as one stalled."""
    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.process.pid, signal.SIGCONT)


@pytest.mark.parametrize("batching", [True, False], ids=["batched", "one-by-one"])
async def test_a_write_is_answered_once_the_replica_has_it(replicated, master, batching):
    keys, told = own_keys(), Told()
    saga_log = durable_log(master, keys, told, batching)
    records = [new_saga() for _ in range(20)]

    await asyncio.gather(*(saga_log.create(record, []) for record in records))

    replica = aioredis.Redis(port=port_of(replicated.replica))
    try:
        assert await replica.exists(*(keys.saga(r.saga_id) for r in records)) == len(records)
    finally:
        await replica.aclose()
    assert told.shortfalls == [] and told.met_times >= 1


@pytest.mark.parametrize("batching", [True, False], ids=["batched", "one-by-one"])
async def test_a_write_the_replica_did_not_take_in_time_stands_and_is_told(
    replicated, master, batching
):
    keys, told = own_keys(), Told()
    saga_log = durable_log(master, keys, told, batching, wait_ms=SHORT_WAIT_MS)
    record = new_saga()

    with stopped(replicated.replica):
        await saga_log.create(record, [])
        assert await master.exists(keys.saga(record.saga_id)) == 1
        assert told.shortfalls == [(1, 0, 1)]
        await master.zadd(keys.in_flight, {record.saga_id: 0})  # its lease run out
        taken = await saga_log.acquire(record.saga_id, "recoverer", parked=False)
        assert taken is not None and taken.epoch == record.epoch + 1
        assert told.shortfalls == [(1, 0, 1), (1, 0, 1)]

    # Going on: the replica has the writes again (it had all it missed first).
    await durable_log(master, keys, told, batching).save(
        taken.moved(time.time(), step="record"), []
    )
    assert told.met_times == 1
