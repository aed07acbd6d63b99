"""The recoverer: an undo that keeps failing is retried, then parked for an operator."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from prometheus_client import REGISTRY

from orchestrator.saga.engine import SagaEngine
from orchestrator.saga.recovery import Recoverer
from orchestrator.saga.retry_policy import RetryPolicy
from sagas.errors import OutOfStock, StoreUnavailable
from sagas.records import SagaStatus
from tests.unit.fakes import MemorySagaLog, Script


def recoverer(saga_log: MemorySagaLog, script: Script, max_recoveries: int) -> Recoverer:
    definition = script.definition()
    engine = SagaEngine(saga_log, policy=RetryPolicy(retry_seconds=0))
    return Recoverer(
        saga_log,
        engine,
        {definition.name: definition},
        owner="test",
        max_recoveries=max_recoveries,
    )


def recovered_total(status: str) -> float:
    labels = {"saga": "test", "status": status}
    return REGISTRY.get_sample_value("saga_recovered_total", labels) or 0.0


def failed_total() -> float:
    return REGISTRY.get_sample_value("saga_failed_total", {"saga": "test"}) or 0.0


async def failed_undo(saga_log: MemorySagaLog, script: Script) -> str:
    script.fail("do b", OutOfStock("x"))
    script.fail("undo a", *[StoreUnavailable("store") for _ in range(10)])
    driver = SagaEngine(saga_log, policy=RetryPolicy(retry_seconds=0))
    with pytest.raises(OutOfStock):
        await driver.run(script.definition(), {})
    await driver.close()  # the driver dies: only recovery goes on with the undo
    record = saga_log.only()
    assert record.status is SagaStatus.COMPENSATING
    return record.saga_id


async def test_an_undo_that_comes_back_is_finished_by_recovery():
    saga_log, script = MemorySagaLog(), Script()
    saga_id = await failed_undo(saga_log, script)
    script.failures["undo a"] = []  # the store is back

    recovered_before = recovered_total("compensated")
    saga_log.lapsed.add(saga_id)
    (result,) = await recoverer(saga_log, script, max_recoveries=3).recover_stuck()

    assert result.status == "compensated"
    assert script.calls.count("undo a") == 2
    assert recovered_total("compensated") - recovered_before == 1


async def test_an_undo_whose_store_stays_away_is_never_parked():
    """A store away is no decision for an operator: recovery retries the undo, its gaps
    growing, however many recoveries it takes."""
    saga_log, script = MemorySagaLog(), Script()
    saga_id = await failed_undo(saga_log, script)
    driver = recoverer(saga_log, script, max_recoveries=2)

    statuses, leases = [], []
    for _ in range(5):
        saga_log.lapsed.add(saga_id)
        (result,) = await driver.recover_stuck()
        statuses.append(result.status)
        leases.append(saga_log.lease_seconds[saga_id])

    assert statuses == [SagaStatus.COMPENSATING] * 5
    assert saga_log.only().deferrals == 6  # the first driver's, then each recovery's
    assert leases == sorted(leases) and leases[0] < leases[-1]  # backing off


async def test_a_saga_whose_drivers_keep_dying_is_parked_after_the_last_recovery():
    """Taken over again and again with no driver ever stepping aside: each died or
    stalled on it. After max_recoveries of those, an operator decides."""
    saga_log, script = MemorySagaLog(), Script()
    saga_id = await failed_undo(saga_log, script)  # one deferral: its first driver's
    for _ in range(3):  # recoverers that died holding it
        saga_log.lapsed.add(saga_id)
        assert await saga_log.acquire(saga_id, "died", parked=False) is not None
    failed_before = failed_total()

    saga_log.lapsed.add(saga_id)
    (result,) = await recoverer(saga_log, script, max_recoveries=2).recover_stuck()

    assert result.status is SagaStatus.FAILED
    assert script.calls.count("undo a") == 1  # the first driver's; none after
    assert "parked for an operator" in saga_log.only().error
    assert failed_total() - failed_before == 1


async def test_a_saga_whose_lease_is_live_is_skipped_not_driven():
    saga_log, script = MemorySagaLog(), Script()
    saga_id = await failed_undo(saga_log, script)  # compensating, its lease not lapsed

    result = await recoverer(saga_log, script, max_recoveries=3).recover(saga_id)

    assert result.skipped and not result.ended_well
    assert (result.status, result.shown_status) == (None, "skipped")
    assert script.calls.count("undo a") == 1  # only the dead driver's try


async def parked_forward(saga_log: MemorySagaLog, script: Script, count: int) -> list[str]:
    """`count` sagas whose pivot landed and whose last step's store was away: stuck."""
    script.down("do c")
    driver = SagaEngine(saga_log, policy=RetryPolicy(retry_seconds=0))
    sagas = [await driver.run(script.definition(), {}) for _ in range(count)]
    script.up("do c")
    for saga in sagas:
        saga_log.records[saga.saga_id] = replace(saga, status=SagaStatus.RUNNING)
        saga_log.lapsed.add(saga.saga_id)
    return [saga.saga_id for saga in sagas]


async def test_a_round_drives_its_stuck_sagas_side_by_side():
    """One saga waiting on a slow store does not hold the others back: the round
    finishes them while it waits."""
    saga_log, script = MemorySagaLog(), Script()
    stuck = await parked_forward(saga_log, script, 3)
    slow: list[str] = []
    others_done = asyncio.Event()

    async def wait_for_the_others(saga_id: str) -> None:
        slow.append(saga_id)  # the first saga to reach its last step
        await others_done.wait()

    save = saga_log.save

    async def save_and_watch(record, events, **options) -> None:
        await save(record, events, **options)
        completed = [r for r in saga_log.records.values() if r.status is SagaStatus.COMPLETED]
        if len(completed) == 2:
            others_done.set()

    saga_log.save = save_and_watch  # type: ignore[method-assign]
    script.meanwhile["do c"] = wait_for_the_others
    driver = recoverer(saga_log, script, max_recoveries=3)

    async with asyncio.timeout(10):  # one saga at a time, the slow one would wait forever
        results = await driver.recover_stuck()

    assert sorted(r.saga_id for r in results) == sorted(stuck)
    assert {r.status for r in results} == {SagaStatus.COMPLETED}
    assert len(slow) == 1


class LogAwayFor(MemorySagaLog):
    """A saga log that cannot be reached about one saga (as if it went away then)."""

    def __init__(self) -> None:
        super().__init__()
        self.away_for: str | None = None

    async def acquire(self, saga_id: str, owner: str, *, parked: bool):
        if saga_id == self.away_for:
            raise StoreUnavailable("redis")
        return await super().acquire(saga_id, owner, parked=parked)


async def test_once_a_recovery_finds_a_store_away_the_round_starts_no_other():
    saga_log, script = LogAwayFor(), Script()
    stuck = await parked_forward(saga_log, script, 10)
    saga_log.away_for = (await saga_log.stuck(None))[0]  # the first the round takes

    with pytest.raises(StoreUnavailable):
        await recoverer(saga_log, script, max_recoveries=3).recover_stuck()

    assert sorted(await saga_log.stuck(None)) == sorted(stuck)  # all left for the next round
