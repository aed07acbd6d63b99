"""The saga engine's ordering, compensation and parking rules, with scripted steps."""

from __future__ import annotations

import pytest

from orchestrator.engine import SagaEngine
from sagas.definition import SagaDefinition
from sagas.errors import LeaseLost, OutOfStock, SagaConflict, StoreUnavailable
from sagas.records import SagaRecord, SagaStatus
from tests.unit.fakes import MemorySagaLog, Script


@pytest.fixture
def script() -> Script:
    return Script()


@pytest.fixture
def saga_log() -> MemorySagaLog:
    return MemorySagaLog()


@pytest.fixture
def engine(saga_log: MemorySagaLog) -> SagaEngine:
    return SagaEngine(saga_log, store_attempts=3, backoff_seconds=0)


def unavailable(*, maybe_applied: bool = True) -> StoreUnavailable:
    return StoreUnavailable("store", maybe_applied=maybe_applied)


async def test_happy_path_logs_intent_before_and_outcome_after_each_step(engine, saga_log, script):
    record = await engine.run(script.definition(), {"k": "v"})

    assert script.calls == ["do a", "do b", "do c"]
    assert record.status is SagaStatus.COMPLETED
    assert record.done == ("a", "b", "c")
    assert saga_log.only() == record
    assert saga_log.phases() == [
        ("a", "started"),
        ("a", "succeeded"),
        ("b", "started"),
        ("b", "succeeded"),
        ("c", "started"),
        ("c", "succeeded"),
        ("c", "finished"),
    ]
    assert saga_log.writes == 4  # start, then outcome and next intent merged per step


async def test_business_rejection_undoes_completed_steps_only(engine, saga_log, script):
    script.fail("do b", OutOfStock("x"))

    with pytest.raises(OutOfStock):
        await engine.run(script.definition(), {})

    assert script.calls == ["do a", "do b", "undo a"]
    record = saga_log.only()
    assert record.status is SagaStatus.COMPENSATED
    assert record.done == ()
    assert "OutOfStock" in record.error


async def test_unknown_outcome_undoes_the_failed_step_too_in_reverse(engine, saga_log, script):
    script.fail("do b", unavailable(), unavailable(), unavailable())

    with pytest.raises(StoreUnavailable):
        await engine.run(script.definition(), {})

    assert script.calls == ["do a", "do b", "do b", "do b", "undo b", "undo a"]
    assert saga_log.only().status is SagaStatus.COMPENSATED


async def test_store_never_reached_is_not_undone(engine, saga_log, script):
    script.fail("do b", *[unavailable(maybe_applied=False)] * 3)

    with pytest.raises(StoreUnavailable):
        await engine.run(script.definition(), {})

    assert script.calls == ["do a", "do b", "do b", "do b", "undo a"]


async def test_one_ambiguous_try_makes_the_whole_step_ambiguous(engine, saga_log, script):
    script.fail("do b", unavailable(), *[unavailable(maybe_applied=False)] * 2)

    with pytest.raises(StoreUnavailable):
        await engine.run(script.definition(), {})

    assert script.calls[-2:] == ["undo b", "undo a"]


async def test_a_store_back_within_the_attempts_is_no_failure(engine, saga_log, script):
    script.fail("do b", unavailable())

    record = await engine.run(script.definition(), {})

    assert record.status is SagaStatus.COMPLETED
    assert ("b", "retrying") in saga_log.phases()


async def test_failing_compensation_is_left_to_recovery_and_reraises_the_original(
    engine, saga_log, script
):
    original = OutOfStock("x")
    script.fail("do b", original)
    script.fail("undo a", unavailable(), unavailable(), unavailable())

    with pytest.raises(OutOfStock) as raised:
        await engine.run(script.definition(), {})

    assert raised.value is original
    assert any("compensation a failed" in note for note in raised.value.__notes__)
    assert script.calls == ["do a", "do b", "undo a", "undo a", "undo a"]
    record = saga_log.only()
    assert record.status is SagaStatus.COMPENSATING  # in flight: recovery retries the undo
    assert record.done == ("a",)
    assert "undo a failed" in record.error
    assert ("a", "compensation_failed") in saga_log.phases()


async def test_ambiguous_step_whose_undo_fails_keeps_earlier_steps(engine, saga_log, script):
    """If b may have landed and cannot be undone, undoing a would leave b's effect orphaned."""
    script.fail("do b", unavailable(), unavailable(), unavailable())
    script.fail("undo b", unavailable(), unavailable(), unavailable())

    with pytest.raises(StoreUnavailable):
        await engine.run(script.definition(), {})

    assert "undo a" not in script.calls
    assert saga_log.only().status is SagaStatus.COMPENSATING


async def test_compensation_retries_a_store_that_comes_back(engine, saga_log, script):
    script.fail("do b", OutOfStock("x"))
    script.fail("undo a", unavailable())

    with pytest.raises(OutOfStock):
        await engine.run(script.definition(), {})

    assert script.calls == ["do a", "do b", "undo a", "undo a"]
    assert saga_log.only().status is SagaStatus.COMPENSATED


async def test_after_the_pivot_a_step_is_retried_not_compensated(engine, saga_log, script):
    script.fail("do c", unavailable(), unavailable())

    record = await engine.run(script.definition(), {})

    assert script.calls == ["do a", "do b", "do c", "do c", "do c"]
    assert record.status is SagaStatus.COMPLETED


async def test_after_the_pivot_exhausted_retries_park_the_saga(engine, saga_log, script):
    script.fail("do c", unavailable(), unavailable(), unavailable())

    record = await engine.run(script.definition(), {})

    assert "undo b" not in script.calls and "undo a" not in script.calls
    assert record.status is SagaStatus.FAILED
    assert record.step == "c"
    assert saga_log.only().status is SagaStatus.FAILED


async def test_log_down_at_start_touches_nothing(engine, saga_log, script):
    saga_log.fail_from_write = 1

    with pytest.raises(StoreUnavailable):
        await engine.run(script.definition(), {})

    assert script.calls == []


async def test_log_down_before_the_next_intent_undoes_what_is_done(engine, saga_log, script):
    saga_log.fail_from_write = 2  # the write that records "a succeeded, b started"

    with pytest.raises(StoreUnavailable):
        await engine.run(script.definition(), {})

    assert script.calls == ["do a", "undo a"]


async def test_log_down_after_the_pivot_does_not_stop_the_saga(engine, saga_log, script):
    saga_log.fail_from_write = 3  # the write that records "b succeeded, c started"

    record = await engine.run(script.definition(), {})

    assert script.calls == ["do a", "do b", "do c"]
    assert record.status is SagaStatus.COMPLETED


def test_a_pivot_must_be_a_step(script):
    with pytest.raises(ValueError, match="pivot"):
        SagaDefinition("bad", script.definition().steps, "nope", script.pivot_landed)


class Dies(BaseException):
    """Stands for a process killed right after a step: nothing after it runs."""


def die_after(step: str):
    def hook(done: str) -> None:
        if done == step:
            raise Dies(step)

    return hook


async def crash_after(step: str, saga_log: MemorySagaLog, script: Script) -> SagaRecord:
    crashing = SagaEngine(saga_log, store_attempts=3, backoff_seconds=0, after_step=die_after(step))
    with pytest.raises(Dies):
        await crashing.run(script.definition(), {})
    record = saga_log.only()
    saga_log.lapsed.add(record.saga_id)
    taken = await saga_log.acquire(record.saga_id, "recoverer", parked=False)
    assert taken is not None
    return taken


async def test_recovery_before_the_pivot_compensates(engine, saga_log, script):
    record = await crash_after("a", saga_log, script)

    final = await engine.resume(script.definition(), record)

    assert final.status is SagaStatus.COMPENSATED
    assert script.calls == ["do a", "undo a"]


async def test_recovery_inside_the_pivot_goes_forward_if_it_landed(engine, saga_log, script):
    record = await crash_after("b", saga_log, script)
    script.b_landed = True

    final = await engine.resume(script.definition(), record)

    assert final.status is SagaStatus.COMPLETED
    assert script.calls == ["do a", "do b", "probe b", "do c"]


async def test_recovery_inside_the_pivot_compensates_if_it_did_not_land(engine, saga_log, script):
    record = await crash_after("b", saga_log, script)

    final = await engine.resume(script.definition(), record)

    assert final.status is SagaStatus.COMPENSATED
    assert script.calls == ["do a", "do b", "probe b", "undo b", "undo a"]


async def test_recovery_after_the_pivot_goes_forward(engine, saga_log, script):
    record = await crash_after("c", saga_log, script)

    final = await engine.resume(script.definition(), record)

    assert final.status is SagaStatus.COMPLETED
    assert script.calls == ["do a", "do b", "do c", "do c"]


async def test_a_fenced_out_driver_stops_before_its_next_step(engine, saga_log, script):
    """A driver paused past its lease: its next write is refused and it acts no more."""
    record = await crash_after("a", saga_log, script)
    zombie = record.moved(record.updated_at, epoch=record.epoch - 1)

    with pytest.raises(LeaseLost):
        await engine.resume(script.definition(), zombie)

    assert script.calls == ["do a"]


async def test_a_pivot_landing_after_a_takeover_compensated_is_undone(engine, saga_log, script):
    """A paused driver's claim lands after the recoverer looked and went backward."""
    definition = script.definition()

    async def recoverer_compensates(saga_id: str) -> None:
        saga_log.lapsed.add(saga_id)
        taken = await saga_log.acquire(saga_id, "recoverer", parked=False)
        assert taken is not None
        recovered = await SagaEngine(saga_log, backoff_seconds=0).resume(definition, taken)
        assert recovered.status is SagaStatus.COMPENSATED
        script.b_landed = True  # the paused driver's write reaches the store only now

    script.meanwhile["do b"] = recoverer_compensates

    with pytest.raises(LeaseLost):  # the client is told 503, not that the claim stands
        await engine.run(definition, {})

    assert script.calls == ["do a", "do b", "probe b", "undo b", "undo a", "undo b"]
    assert saga_log.only().status is SagaStatus.COMPENSATED


async def test_a_pivot_landing_before_a_takeover_went_forward_succeeds(engine, saga_log, script):
    definition = script.definition()

    async def recoverer_goes_forward(saga_id: str) -> None:
        script.b_landed = True
        saga_log.lapsed.add(saga_id)
        taken = await saga_log.acquire(saga_id, "recoverer", parked=False)
        assert taken is not None
        recovered = await SagaEngine(saga_log, backoff_seconds=0).resume(definition, taken)
        assert recovered.status is SagaStatus.COMPLETED

    script.meanwhile["do b"] = recoverer_goes_forward

    record = await engine.run(definition, {})

    assert "b" in record.done  # the claim stands; the new driver finished the saga
    assert script.calls == ["do a", "do b", "probe b", "do c"]
    assert saga_log.only().status is SagaStatus.COMPLETED


async def test_operator_compensation_is_refused_past_the_pivot(engine, saga_log, script):
    record = await crash_after("c", saga_log, script)

    with pytest.raises(SagaConflict):
        await engine.compensate(script.definition(), record)
