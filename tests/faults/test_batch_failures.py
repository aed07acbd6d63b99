"""A store that goes away under a batch in flight: each saga in it gets a failure of its
own, and each one's own retry settles it exactly, as if it had been sent alone."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

from orchestrator.bootstrap import mongo_client, postgres_pool, redis_client
from sagas.errors import AlreadyClaimed, ClaimInFlight, OutOfStock, StoreUnavailable
from sagas.records import SagaRecord, SagaStatus
from services.batched import BatchedClaims, BatchedInventory, BatchedSagaLog
from services.batching import Coalescer
from tests.support.apart import forget_saga_log, own_keys
from tests.support.invariants import assert_conserved
from tests.support.proxy import CuttableProxy, through
from tests.support.settings import changed
from tests.support.waiting import eventually

Answer = TypeVar("Answer")
NOON = datetime(2030, 1, 1, 12, 0, 0, 123000, tzinfo=UTC)


def new_saga_id() -> str:
    return str(uuid.uuid4())


async def cut_with_batches_in_flight(
    proxy: CuttableProxy, coalescer: Coalescer, calls: list
) -> list[BaseException | None]:
    """Hang the store, start the calls, cut the store once their batch is in flight;
    bring it back. Each call's own answer."""
    await proxy.hang()
    sent_before = coalescer.batches_sent
    tasks = [asyncio.ensure_future(call) for call in calls]

    async def in_flight() -> bool:
        return coalescer.batches_sent > sent_before

    await eventually(in_flight)
    await proxy.cut()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    await proxy.restore()
    return results


async def retry(call: Callable[[], Awaitable[Answer]]) -> Answer:
    """A saga's own retry, as the engine's: again while the store is still coming back
    (a client reconnects in its own time on a busy machine)."""
    for _ in range(200):
        try:
            return await call()
        except StoreUnavailable:
            await asyncio.sleep(0.05)
    return await call()


def each_failed_alone(results: list) -> None:
    assert all(isinstance(result, StoreUnavailable) for result in results), results
    assert len({id(result) for result in results}) == len(results)


async def test_postgresql_cut_under_a_reserve_batch_fails_each_saga_and_retries_settle_it(
    settings, pg, pg_proxy, name, components
):
    await components.inventory.create_coupon(name, 4)
    sagas = [(new_saga_id(), f"user{n % 6}") for n in range(10)]  # 6 users, 4 units
    async with postgres_pool(through(settings, database_url=pg_proxy)) as pool:
        inventory = BatchedInventory(pool)
        results = await cut_with_batches_in_flight(
            pg_proxy,
            inventory.reserves,
            [inventory.reserve(saga_id, name, user) for saga_id, user in sagas],
        )
        each_failed_alone(results)
        await assert_conserved(pg, name)

        # Each saga's own retry (a replay of its reserve), all at once again.
        retried = await asyncio.gather(
            *(retry(lambda s=s, u=u: inventory.reserve(s, name, u)) for s, u in sagas),
            return_exceptions=True,
        )

    reserved = [saga for saga, result in zip(sagas, retried, strict=True) if result is None]
    assert {type(r) for r in retried if r is not None} <= {ClaimInFlight, OutOfStock}
    assert len(reserved) == 4
    assert len({user for _, user in reserved}) == 4
    await assert_conserved(pg, name)


async def test_mongodb_cut_under_a_record_batch_fails_each_saga_and_retries_settle_it(
    settings, mongo, mongo_proxy, name, components
):
    sagas = [(new_saga_id(), f"user{n % 4}") for n in range(8)]  # each user twice
    async with mongo_client(through(settings, mongo_url=mongo_proxy)) as client:
        claims = BatchedClaims(client)
        results = await cut_with_batches_in_flight(
            mongo_proxy,
            claims.records,
            [claims.record(saga_id, user, name, NOON) for saga_id, user in sagas],
        )
        each_failed_alone(results)

        retried = await asyncio.gather(
            *(retry(lambda s=s, u=u: claims.record(s, u, name, NOON)) for s, u in sagas),
            return_exceptions=True,
        )

    assert all(result == NOON or isinstance(result, AlreadyClaimed) for result in retried)
    recorded = [saga for saga, result in zip(sagas, retried, strict=True) if result == NOON]
    assert sorted(user for _, user in recorded) == ["user0", "user1", "user2", "user3"]
    assert await components.claims.claimants(name) == dict(recorded)


async def test_redis_cut_under_a_log_batch_fails_each_write_and_retries_land(settings, redis_proxy):
    keys = own_keys()
    apart = changed(through(settings, redis_url=redis_proxy), {"redis_key_prefix": keys.prefix})
    now = time.time()
    records = [
        SagaRecord(new_saga_id(), "claim", {}, SagaStatus.RUNNING, "reserve", now, now)
        for _ in range(6)
    ]
    async with redis_client(apart) as client:
        saga_log = BatchedSagaLog(client, keys=keys, lease_seconds=60, retention_seconds=600)
        try:
            results = await cut_with_batches_in_flight(
                redis_proxy, saga_log.writes, [saga_log.create(record, []) for record in records]
            )
            each_failed_alone(results)

            # A create that may have landed is retried as a save by its own driver.
            for record in records:
                if await retry(lambda r=record: saga_log.load(r.saga_id)) is None:
                    await retry(lambda r=record: saga_log.create(r, []))
            await asyncio.gather(
                *(
                    retry(lambda r=record: saga_log.save(r.moved(now + 1, step="record"), []))
                    for record in records
                )
            )
            assert [(await saga_log.load(r.saga_id)).step for r in records] == ["record"] * 6
        finally:
            await forget_saga_log(client, keys)


async def test_cancelled_claim_steps_leave_the_others_in_their_batch_answered(pg, name):
    sizes: list[int] = []
    inventory = BatchedInventory(pg, observe=lambda batch, size: sizes.append(size))
    await inventory.create_coupon(name, 30)
    tasks = [
        asyncio.ensure_future(inventory.reserve(new_saga_id(), name, f"user{n}")) for n in range(30)
    ]
    await asyncio.sleep(0)  # every call queued, none sent yet
    for task in tasks[1::3]:
        task.cancel()  # withdrawn before it is sent

    async def in_flight() -> bool:
        return bool(sizes)

    await eventually(in_flight)
    for task in tasks[2::3]:
        task.cancel()  # in flight, or answered already

    results = await asyncio.gather(*tasks, return_exceptions=True)

    assert results[0::3] == [None] * 10
    assert all(isinstance(result, asyncio.CancelledError) for result in results[1::3])
    assert all(
        result is None or isinstance(result, asyncio.CancelledError) for result in results[2::3]
    )
    assert sizes[0] == 20  # the withdrawn ones were never sent
    await assert_conserved(pg, name)
