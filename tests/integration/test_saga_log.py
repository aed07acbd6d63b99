"""RedisSagaLog against a real Redis: records, their event streams and the status indexes."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TypeVar

import pytest

from sagas.errors import LeaseLost
from sagas.records import Phase, SagaEvent, SagaRecord, SagaStatus
from services.redis_keys import RedisKeys
from services.saga_log import SCRIPTS, RedisSagaLog
from tests.support.apart import forget_saga_log, own_keys
from tests.support.waiting import eventually

T = TypeVar("T")


@pytest.fixture
def saga_log(redis, settings, keys) -> RedisSagaLog:
    return RedisSagaLog(
        redis,
        keys=keys,
        lease_seconds=settings.saga_lease_seconds,
        retention_seconds=settings.saga_retention_seconds,
        refused_retention_seconds=settings.saga_refused_retention_seconds,
    )


@pytest.fixture
def new_saga_id() -> Callable[[], str]:
    return lambda: str(uuid.uuid4())


def saga(saga_id: str, at: float, status: SagaStatus = SagaStatus.RUNNING) -> SagaRecord:
    return SagaRecord(
        saga_id=saga_id,
        name="claim",
        payload={"user_id": "alice", "coupon_name": "PROMO"},
        status=status,
        step="reserve",
        created_at=at,
        updated_at=at,
    )


async def indexes_holding(redis, keys: RedisKeys, saga_id: str) -> dict[str, float]:
    """The status indexes that list the saga, with its score in each."""
    indexes = (keys.in_flight, keys.failed, keys.finished, keys.refused)
    scores = {index: await redis.zscore(index, saga_id) for index in indexes}
    return {index: score for index, score in scores.items() if score is not None}


async def write(saga_log: RedisSagaLog, record: SagaRecord, events=()) -> None:
    """Create the saga on its first write, as the engine does; save it after that."""
    if await saga_log.load(record.saga_id) is None:
        await saga_log.create(record, list(events))
    else:
        await saga_log.save(record, list(events))


async def test_saved_record_loads_back_equal(saga_log, new_saga_id):
    record = SagaRecord(
        saga_id=new_saga_id(),
        name="claim",
        payload={
            "user_id": "ünïcode ✓",
            "coupon_name": "PROMO",
            "claimed_at": "2030-01-01T12:00:00.123Z",
            "nested": {"tries": [1, 2.5, None, True]},
        },
        status=SagaStatus.COMPENSATING,
        step="record",
        created_at=1_900_000_000.123456,
        updated_at=1_900_000_001.654321,
        attempts=2,
        error="StoreUnavailable: mongodb is unavailable",
        done=("reserve", "record"),
    )

    await write(saga_log, record, [])

    assert await saga_log.load(record.saga_id) == record


async def test_record_with_defaults_loads_back_equal(saga_log, new_saga_id):
    record = saga(new_saga_id(), time.time())

    await write(saga_log, record, [])

    assert await saga_log.load(record.saga_id) == record


async def test_a_save_writes_what_moves_and_the_record_keeps_what_its_creation_wrote(
    saga_log, new_saga_id
):
    """What recovery loads after the outcome write: the saga as created (name, payload,
    start), and where it got to. A save no longer sends the fields that never change, so
    a save carrying other values for them (none does) leaves them as created."""
    at = time.time()
    created = saga(new_saga_id(), at)
    await saga_log.create(created, [])
    moved = created.moved(at + 1, step="confirm", done=("reserve", "record"))
    await saga_log.save(
        replace(moved, name="other", payload={"user_id": "mallory"}, created_at=at + 5), []
    )

    assert await saga_log.load(created.saga_id) == moved


async def test_history_returns_events_in_the_order_they_were_saved(saga_log, new_saga_id):
    first = saga(new_saga_id(), time.time())
    second = first.moved(first.updated_at + 1, step="record", done=("reserve",))
    events = [
        SagaEvent(first.created_at, "reserve", Phase.STARTED),
        SagaEvent(second.updated_at, "reserve", Phase.SUCCEEDED),
        SagaEvent(second.updated_at, "record", Phase.STARTED),
        SagaEvent(second.updated_at + 1, "record", Phase.FAILED, "AlreadyClaimed: PROMO"),
    ]

    await write(saga_log, first, events[:1])
    await write(saga_log, second, events[1:])

    assert await saga_log.history(first.saga_id) == events
    assert await saga_log.load(first.saga_id) == second


async def test_running_saga_is_indexed_in_flight_without_expiry(saga_log, redis, new_saga_id, keys):
    record = saga(new_saga_id(), time.time())

    await write(saga_log, record, [SagaEvent(record.created_at, "reserve", Phase.STARTED)])

    lease_ends = await redis.zscore(keys.in_flight, record.saga_id)
    assert lease_ends > time.time()
    assert await indexes_holding(redis, keys, record.saga_id) == {keys.in_flight: lease_ends}
    assert await redis.ttl(keys.saga(record.saga_id)) == -1
    in_flight = await saga_log.find(SagaStatus.RUNNING, limit=100_000)
    assert record in in_flight


async def test_completed_saga_leaves_in_flight_and_expires(
    saga_log, redis, settings, new_saga_id, keys
):
    started = saga(new_saga_id(), time.time())
    await write(saga_log, started, [SagaEvent(started.created_at, "reserve", Phase.STARTED)])
    done = started.moved(started.updated_at + 1, status=SagaStatus.COMPLETED, step="confirm")

    await write(saga_log, done, [SagaEvent(done.updated_at, "confirm", Phase.FINISHED)])

    assert await indexes_holding(redis, keys, done.saga_id) == {keys.finished: done.updated_at}
    for key in (keys.saga(done.saga_id), keys.saga_events(done.saga_id)):
        assert 0 < await redis.ttl(key) <= settings.saga_retention_seconds
    assert await saga_log.load(done.saga_id) == done


async def test_failed_saga_is_parked_without_expiry(saga_log, redis, new_saga_id, keys):
    started = saga(new_saga_id(), time.time())
    await write(saga_log, started, [SagaEvent(started.created_at, "reserve", Phase.STARTED)])
    parked = started.moved(
        started.updated_at + 1, status=SagaStatus.FAILED, step="confirm", error="boom"
    )

    await write(saga_log, parked, [SagaEvent(parked.updated_at, "confirm", Phase.FAILED, "boom")])

    assert await indexes_holding(redis, keys, parked.saga_id) == {keys.failed: parked.updated_at}
    assert await redis.ttl(keys.saga(parked.saga_id)) == -1
    assert await redis.ttl(keys.saga_events(parked.saga_id)) == -1
    assert parked in await saga_log.find(SagaStatus.FAILED, limit=100_000)


async def test_a_refused_saga_keeps_only_its_record_briefly_in_its_own_index(
    saga_log, redis, settings, new_saga_id, keys
):
    started = saga(new_saga_id(), time.time())
    await write(saga_log, started, [SagaEvent(started.created_at, "reserve", Phase.STARTED)])
    refused = started.moved(
        started.updated_at + 1, status=SagaStatus.COMPENSATED, error="OutOfStock: PROMO"
    )

    await saga_log.refused(refused)

    assert await indexes_holding(redis, keys, refused.saga_id) == {keys.refused: refused.updated_at}
    assert await saga_log.history(refused.saga_id) == []
    assert refused in await saga_log.find(SagaStatus.COMPENSATED, limit=100_000)
    ttl = await redis.ttl(keys.saga(refused.saga_id))
    assert 0 < ttl <= settings.saga_refused_retention_seconds
    assert await saga_log.load(refused.saga_id) == refused


async def test_a_refusal_from_a_driver_that_lost_the_saga_is_refused(saga_log, new_saga_id):
    record = saga(new_saga_id(), time.time())
    await saga_log.create(record, [])

    with pytest.raises(LeaseLost):
        await saga_log.refused(record.moved(record.updated_at, epoch=record.epoch - 1))


async def test_compensating_a_failed_saga_moves_it_to_finished(saga_log, redis, new_saga_id, keys):
    started = saga(new_saga_id(), time.time())
    parked = started.moved(started.updated_at + 1, status=SagaStatus.FAILED)
    compensated = parked.moved(parked.updated_at + 1, status=SagaStatus.COMPENSATED)

    for record in (started, parked, compensated):
        await write(saga_log, record, [])

    assert await indexes_holding(redis, keys, started.saga_id) == {
        keys.finished: compensated.updated_at
    }
    assert await redis.ttl(keys.saga(started.saga_id)) > 0


async def test_find_filters_by_status_newest_first_and_limits(saga_log, new_saga_id):
    base = time.time()
    failed = [saga(new_saga_id(), base + n, SagaStatus.FAILED) for n in range(3)]
    compensating = saga(new_saga_id(), base + 10, SagaStatus.COMPENSATING)
    running_now = saga(new_saga_id(), base + 11)
    for record in (*failed, compensating, running_now):
        await write(saga_log, record, [])

    assert await saga_log.find(SagaStatus.FAILED, limit=2) == [failed[2], failed[1]]
    assert await saga_log.find(SagaStatus.RUNNING, limit=1) == [running_now]
    assert await saga_log.find(SagaStatus.COMPENSATING, limit=1) == [compensating]
    assert await saga_log.find(None, limit=3) == [running_now, compensating, failed[2]]
    assert await saga_log.find(SagaStatus.FAILED, limit=100_000) == failed[::-1]


async def reads_during(redis, keys: RedisKeys, call: Awaitable[T]) -> tuple[T, list[list[str]]]:
    """Await `call`; its result, and each command it sent about the saga log's keys as
    Redis's MONITOR saw them (they end where a marker sent after them appears)."""
    marker = f"{keys.prefix}done-{uuid.uuid4()}"
    async with redis.monitor() as monitor:
        result = await call
        await redis.echo(marker)
        commands: list[list[str]] = []
        while (command := (await monitor.next_command())["command"].split()) != ["ECHO", marker]:
            if any(part.startswith(keys.prefix) for part in command):
                commands.append(command)
    return result, commands


async def test_find_reads_the_newest_of_each_index_and_no_more(saga_log, redis, new_saga_id, keys):
    """A week of finished sagas is not read to show the newest few: each index is read newest
    first, `limit` at most, and the readings merged."""
    base = time.time() - 3600
    finished = [saga(new_saga_id(), base + n, SagaStatus.COMPLETED) for n in range(300)]
    failed = [saga(new_saga_id(), base + n + 0.5, SagaStatus.FAILED) for n in (297, 298)]
    running = [saga(new_saga_id(), base + n) for n in (298.2, 300)]  # lease order = this order
    for record in (*finished, *failed, *running):
        await saga_log.create(record, [])
    newest_first = sorted((*finished, *failed, *running), key=lambda r: r.updated_at)[::-1]
    limit = 5

    listing, commands = await reads_during(redis, keys, saga_log.find(None, limit))

    assert listing == newest_first[:limit]
    loaded = {command[1] for command in commands if command[0] == "HGETALL"}
    newest_of_each = {
        keys.saga(r.saga_id) for group in (finished, failed, running) for r in group[-limit:]
    }
    assert {keys.saga(record.saga_id) for record in listing} <= loaded <= newest_of_each
    # Each index read again as it was read, for the ids alone: how many it gave.
    index_reads = [command for command in commands if command[0] in ("ZRANGE", "ZREVRANGE")]
    ids_read = [
        len(await redis.execute_command(*(part for part in command if part != "WITHSCORES")))
        for command in index_reads
    ]
    assert index_reads and sum(ids_read) <= limit * 4  # four indexes


async def test_find_reads_on_past_sagas_it_skips(saga_log, new_saga_id):
    """Filtered by status or by `where`, an index is read further down until `limit` are
    found; sagas updated at one instant are each listed once, across reads."""
    base = time.time() - 3600
    compensated = [saga(new_saga_id(), base + n, SagaStatus.COMPENSATED) for n in range(3)]
    tied = [saga(new_saga_id(), base + 5, SagaStatus.COMPENSATED) for _ in range(7)]
    completed = [saga(new_saga_id(), base + 10 + n, SagaStatus.COMPLETED) for n in range(4)]
    for record in (*compensated, *tied, *completed):
        await saga_log.create(record, [])

    def ids(records: list[SagaRecord]) -> list[str]:
        return [record.saga_id for record in records]

    two = ids(await saga_log.find(SagaStatus.COMPENSATED, 2))
    assert len(two) == 2 and set(two) <= set(ids(tied))
    seven = ids(await saga_log.find(SagaStatus.COMPENSATED, 7))
    assert sorted(seven) == sorted(ids(tied))
    nine = await saga_log.find(SagaStatus.COMPENSATED, 9)
    assert sorted(ids(nine[:7])) == sorted(ids(tied))
    assert nine[7:] == [compensated[2], compensated[1]]
    every = ids(await saga_log.find(SagaStatus.COMPENSATED, None))
    assert sorted(every) == sorted(ids([*tied, *compensated]))
    wanted = {completed[1].saga_id, compensated[0].saga_id}
    picked = await saga_log.find(None, 5, where=lambda record: record.saga_id in wanted)
    assert picked == [completed[1], compensated[0]]


async def test_unknown_saga_has_no_record_and_no_history(saga_log):
    saga_id = str(uuid.uuid4())

    assert await saga_log.load(saga_id) is None
    assert await saga_log.history(saga_id) == []


@pytest.fixture
def short_lease_log(redis, settings, keys) -> RedisSagaLog:
    """The same saga log, with leases that lapse at once: every saga in flight is stuck."""
    return RedisSagaLog(
        redis, keys=keys, lease_seconds=0.001, retention_seconds=settings.saga_retention_seconds
    )


async def stuck(saga_log: RedisSagaLog, saga_id: str) -> None:
    """Return once the saga's lease has run out."""

    async def lapsed() -> bool:
        return saga_id in await saga_log.stuck(100)

    await eventually(lapsed)


async def test_create_refuses_an_existing_saga(saga_log, new_saga_id):
    record = saga(new_saga_id(), time.time())
    await saga_log.create(record, [])

    with pytest.raises(LeaseLost):
        await saga_log.create(record, [])


async def test_save_refuses_a_record_that_is_gone(saga_log, redis, new_saga_id, keys):
    record = saga(new_saga_id(), time.time())
    await saga_log.create(record, [])
    await redis.delete(keys.saga(record.saga_id))

    with pytest.raises(LeaseLost):
        await saga_log.save(record.moved(time.time(), step="record"), [])


async def test_a_live_lease_cannot_be_taken(saga_log, new_saga_id):
    record = saga(new_saga_id(), time.time())
    await saga_log.create(record, [])

    assert await saga_log.acquire(record.saga_id, "thief", parked=False) is None
    assert record.saga_id not in await saga_log.stuck(100_000)


async def test_takeover_raises_the_epoch_and_fences_out_the_old_driver(
    short_lease_log, new_saga_id
):
    record = saga(new_saga_id(), time.time())
    await short_lease_log.create(record, [])
    await stuck(short_lease_log, record.saga_id)

    taken = await short_lease_log.acquire(record.saga_id, "recoverer", parked=False)

    assert taken is not None
    assert (taken.epoch, taken.recoveries) == (record.epoch + 1, 1)
    with pytest.raises(LeaseLost):  # the paused old driver wakes up and writes
        await short_lease_log.save(record.moved(time.time(), step="record"), [])
    await short_lease_log.save(taken.moved(time.time(), step="record"), [])
    assert (await short_lease_log.load(record.saga_id)).step == "record"


async def test_two_recoverers_racing_for_one_saga_one_wins(short_lease_log, saga_log, new_saga_id):
    record = saga(new_saga_id(), time.time())
    await short_lease_log.create(record, [])
    await stuck(short_lease_log, record.saga_id)

    # The recoverers take a long lease, so the winner keeps the saga.
    taken = await asyncio.gather(
        *[saga_log.acquire(record.saga_id, f"r{n}", parked=False) for n in range(20)]
    )

    winners = [t for t in taken if t is not None]
    assert [w.epoch for w in winners] == [record.epoch + 1]


async def test_a_parked_saga_is_taken_only_on_an_operators_word(saga_log, new_saga_id):
    record = saga(new_saga_id(), time.time())
    await saga_log.create(record, [])
    parked = record.moved(time.time(), status=SagaStatus.FAILED, error="boom")
    await saga_log.save(parked, [])

    assert await saga_log.acquire(record.saga_id, "recoverer", parked=False) is None
    taken = await saga_log.acquire(record.saga_id, "operator", parked=True)
    assert taken is not None and taken.epoch == parked.epoch + 1


async def test_warming_up_loads_the_scripts_and_writes_nothing(saga_log, redis, keys):
    await redis.script_flush()

    await saga_log.warm_up(connections=8)

    assert [key async for key in redis.scan_iter(match=f"{keys.prefix}*")] == []
    shas = [hashlib.sha1(script.encode()).hexdigest() for script in SCRIPTS]
    assert await redis.script_exists(*shas) == [True] * len(SCRIPTS)


async def test_lease_names_its_creator_until_a_takeover_and_ends_with_the_saga(
    redis, new_saga_id, keys
):
    creator = RedisSagaLog(
        redis, keys=keys, lease_seconds=30.0, retention_seconds=3600, owner="host-a:1"
    )
    started = saga(new_saga_id(), time.time())
    await write(creator, started, [SagaEvent(started.created_at, "reserve", Phase.STARTED)])

    lease = await creator.lease(started.saga_id)
    assert lease is not None and (lease.owner, lease.live) == ("host-a:1", True)
    assert lease.expires_at == await redis.zscore(keys.in_flight, started.saga_id)

    await redis.zadd(keys.in_flight, {started.saga_id: 0})  # as if its lease had run out
    assert not (await creator.lease(started.saga_id)).live
    taken = await creator.acquire(started.saga_id, "host-b:2", parked=False)
    assert (await creator.lease(started.saga_id)).owner == "host-b:2"

    done = taken.moved(taken.updated_at + 1, status=SagaStatus.COMPLETED, step="confirm")
    await creator.save(done, [SagaEvent(done.updated_at, "confirm", Phase.FINISHED)])
    assert await creator.lease(started.saga_id) is None


async def test_saga_logs_under_two_prefixes_share_a_redis_and_nothing_else(
    saga_log, redis, settings, new_saga_id
):
    other_keys = own_keys()
    other = RedisSagaLog(
        redis,
        keys=other_keys,
        lease_seconds=settings.saga_lease_seconds,
        retention_seconds=settings.saga_retention_seconds,
    )
    mine, theirs = saga(new_saga_id(), time.time()), saga(new_saga_id(), time.time())
    try:
        await saga_log.create(mine, [])
        await other.create(theirs, [])

        assert await saga_log.find(None, 100) == [mine]
        assert await other.find(None, 100) == [theirs]
        assert await saga_log.load(theirs.saga_id) is None
    finally:
        await forget_saga_log(redis, other_keys)


def test_the_default_prefix_keeps_the_keys_of_earlier_releases():
    keys = RedisKeys()
    assert (keys.in_flight, keys.failed, keys.finished, keys.refused) == (
        "coupon:sagas:in-flight",
        "coupon:sagas:failed",
        "coupon:sagas:finished",
        "coupon:sagas:refused",
    )
    assert keys.saga("s") == "coupon:saga:s" and keys.saga_events("s") == "coupon:saga:s:events"


async def test_find_lists_each_saga_once_while_sagas_finish(saga_log, new_saga_id):
    """A saga that moves from the in-flight index to the finished one while find() reads
    the indexes is listed once: find() reads all three in one snapshot."""
    started = [saga(new_saga_id(), time.time()) for _ in range(300)]
    for record in started:
        await saga_log.create(record, [])

    async def finish_them() -> None:
        for record in started:
            done = record.moved(record.updated_at + 1, status=SagaStatus.COMPLETED)
            await saga_log.save(done, [])

    finishing = asyncio.ensure_future(finish_them())
    listings = []
    while not finishing.done():
        listings.append([record.saga_id for record in await saga_log.find(None, 1000)])
    await finishing

    assert all(len(ids) == len(set(ids)) == len(started) for ids in listings)
