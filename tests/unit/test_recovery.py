"""The recoverer: an undo that keeps failing is retried, then parked for an operator."""

from __future__ import annotations

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


async def test_an_undo_that_keeps_failing_is_parked_after_the_last_recovery():
    saga_log, script = MemorySagaLog(), Script()
    saga_id = await failed_undo(saga_log, script)
    driver = recoverer(saga_log, script, max_recoveries=2)
    failed_before = failed_total()

    statuses = []
    for _ in range(3):
        saga_log.lapsed.add(saga_id)
        (result,) = await driver.recover_stuck()
        statuses.append(result.status)

    assert statuses == ["compensating", "compensating", "failed"]
    assert script.calls.count("undo a") == 3  # the run, then two recoveries; none after
    assert "parked for an operator" in saga_log.only().error
    assert failed_total() - failed_before == 1


async def test_a_saga_whose_lease_is_live_is_skipped_not_driven():
    saga_log, script = MemorySagaLog(), Script()
    saga_id = await failed_undo(saga_log, script)  # compensating, its lease not lapsed

    result = await recoverer(saga_log, script, max_recoveries=3).recover(saga_id)

    assert result.skipped and not result.ended_well
    assert (result.status, result.shown_status) == (None, "skipped")
    assert script.calls.count("undo a") == 1  # only the dead driver's try
