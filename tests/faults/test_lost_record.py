"""Redis loses a live saga's record: a business answer the stores gave still reaches the
client as itself, and the sold-out memo still learns from it."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from prometheus_client import REGISTRY

from sagas.errors import OutOfStock
from sagas.records import SagaStatus
from services.redis_keys import RedisKeys
from tests.support.invariants import assert_invariants
from tests.support.waiting import eventually


def sagas_started() -> float:
    return REGISTRY.get_sample_value("saga_started_total", {"saga": "claim"}) or 0.0


async def saga_of(components, user_id: str, coupon: str) -> str:
    """The id of the user's claim saga in flight."""
    running = await components.saga_log.find(SagaStatus.RUNNING, 100_000)
    (saga_id,) = [
        record.saga_id
        for record in running
        if record.payload == {**record.payload, "user_id": user_id, "coupon_name": coupon}
    ]
    return saga_id


async def test_out_of_stock_reaches_the_client_when_redis_lost_the_saga(
    service, components, settings, pg, mongo, redis, name
):
    await service.create(name, 1)
    first = str(uuid.uuid4())
    await mongo.claims.insert_one(
        {"user_id": "first", "coupon_name": name, "saga_id": first, "claimed_at": datetime.now(UTC)}
    )
    async with pg.acquire() as locker, locker.transaction():
        # "first" takes the last unit in a transaction held open: the next reserve waits
        # for the coupon's row lock, its saga in flight, and then finds no stock.
        await locker.fetchval("SELECT reserve_unit($1::uuid, $2, 'first')", first, name)
        await locker.execute("UPDATE holds SET status = 'confirmed' WHERE saga_id = $1", first)
        claiming = asyncio.ensure_future(service.claim("second", name))

        async def reserve_waiting() -> bool:
            return bool(
                await pg.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))",
                    locker.get_server_pid(),
                )
            )

        await eventually(reserve_waiting)
        saga_id = await saga_of(components, "second", name)
        keys = RedisKeys(settings.redis_key_prefix)
        await redis.delete(keys.saga(saga_id), keys.saga_events(saga_id))  # Redis lost it

    with pytest.raises(OutOfStock):
        await claiming

    # The memo was taught: the next claim is answered from memory, without a saga.
    started = sagas_started()
    with pytest.raises(OutOfStock):
        await service.claim("third", name)
    assert sagas_started() == started
    await assert_invariants(pg, mongo, name)
