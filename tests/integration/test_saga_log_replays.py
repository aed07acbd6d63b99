"""A write of the saga log that reaches Redis twice counts once.

A round trip that times out may still land: its bytes were sent, or sit in the kernel
until a partition heals, and the client's retry (redis-py re-sends the whole pipeline on
a timeout) lands too. Found by the cluster tier (a gateway host cut from Redis): a saga
driven by one gateway, never taken over, had its last write's events twice.
"""

from __future__ import annotations

import time
import uuid

import pytest

from sagas.records import Phase, SagaEvent, SagaRecord, SagaStatus
from services.saga_log import LogWrite, RedisSagaLog


@pytest.fixture
def saga_log(redis, settings, keys) -> RedisSagaLog:
    return RedisSagaLog(
        redis,
        keys=keys,
        lease_seconds=settings.saga_lease_seconds,
        retention_seconds=settings.saga_retention_seconds,
    )


def running() -> SagaRecord:
    now = time.time()
    return SagaRecord(
        saga_id=str(uuid.uuid4()),
        name="claim",
        payload={"user_id": "ann", "coupon_name": "PROMO"},
        status=SagaStatus.RUNNING,
        step="reserve",
        created_at=now,
        updated_at=now,
    )


def event(step: str, phase: Phase) -> SagaEvent:
    return SagaEvent(time.time(), step, phase)


async def test_a_save_that_lands_twice_appends_its_events_once(saga_log):
    record = running()
    await saga_log.create(record, [event("reserve", Phase.STARTED)])
    done = record.moved(time.time(), status=SagaStatus.COMPLETED, step="confirm")
    events = (event("reserve", Phase.SUCCEEDED), event("confirm", Phase.FINISHED))
    write = LogWrite("save", done, events, "finished", 60)

    assert await saga_log.apply_many([write]) == [None]
    assert await saga_log.apply_many([write]) == [None]  # the same bytes again: a retry

    history = await saga_log.history(record.saga_id)
    assert [(e.step, e.phase) for e in history] == [
        ("reserve", Phase.STARTED),
        ("reserve", Phase.SUCCEEDED),
        ("confirm", Phase.FINISHED),
    ]


async def test_a_create_that_lands_twice_is_not_taken_for_someone_elses_saga(saga_log):
    record = running()
    write = LogWrite("create", record, (event("reserve", Phase.STARTED),), "in_flight", 60)

    assert await saga_log.apply_many([write]) == [None]
    assert await saga_log.apply_many([write]) == [None]

    assert len(await saga_log.history(record.saga_id)) == 1


async def test_a_late_copy_of_an_earlier_save_does_not_undo_a_later_one(saga_log):
    record = running()
    await saga_log.create(record, [])
    earlier = LogWrite(
        "save",
        record.moved(time.time(), step="record"),
        (event("record", Phase.STARTED),),
        "in_flight",
        60,
    )
    later = LogWrite(
        "save",
        record.moved(time.time(), step="confirm"),
        (event("confirm", Phase.STARTED),),
        "in_flight",
        60,
    )
    await saga_log.apply_many([earlier])
    await saga_log.apply_many([later])

    assert await saga_log.apply_many([earlier]) == [None]  # delivered late: already superseded

    assert (await saga_log.load(record.saga_id)).step == "confirm"
    history = await saga_log.history(record.saga_id)
    assert [(e.step, e.phase) for e in history] == [
        ("record", Phase.STARTED),
        ("confirm", Phase.STARTED),
    ]


async def test_a_write_of_a_driver_that_lost_the_saga_is_still_refused(saga_log, redis, keys):
    record = running()
    await saga_log.create(record, [])
    write = LogWrite("save", record.moved(time.time(), step="record"), (), "in_flight", 60)
    await redis.hincrby(keys.saga(record.saga_id), "epoch", 1)  # another driver took it

    (outcome,) = await saga_log.apply_many([write])

    assert type(outcome).__name__ == "LeaseLost"
