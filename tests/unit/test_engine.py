"""The saga engine's ordering, compensation and parking rules, with scripted steps."""

from __future__ import annotations

import pytest

from orchestrator.engine import SagaEngine
from sagas.definition import SagaDefinition
from sagas.errors import LeaseLost, OutOfStock, SagaConflict, StoreUnavailable
from sagas.records import SagaRecord, SagaStatus
from tests.unit.fakes import FakeClock, MemorySagaLog, Script

LEASE = 10.0


@pytest.fixture
def script() -> Script:
    return Script()


@pytest.fixture
def saga_log() -> MemorySagaLog:
    return MemorySagaLog()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def engine(saga_log: MemorySagaLog, clock: FakeClock) -> SagaEngine:
    return SagaEngine(
        saga_log, monotonic=clock, lease_seconds=LEASE, store_attempts=3, backoff_seconds=0
    )


def unavailable(*, maybe_applied: bool = True) -> StoreUnavailable:
    return StoreUnavailable("store", maybe_applied=maybe_applied)


async def test_happy_path_writes_the_intent_before_the_first_step_and_the_outcome_after_the_last(
    engine, saga_log, script
):
    seen_by_a = []

    async def look(saga_id: str) -> None:
        seen_by_a.append(await saga_log.load(saga_id))

    script.meanwhile["do a"] = look

    record = await engine.run(script.definition(), {"k": "v"})

    assert script.calls == ["do a", "do b", "do c"]
    (intent,) = seen_by_a
    assert (intent.status, intent.step, intent.payload) == (SagaStatus.RUNNING, "a", {"k": "v"})
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
    assert saga_log.writes == 2


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


async def test_log_down_at_the_outcome_leaves_the_saga_for_recovery_to_complete(
    engine, saga_log, script
):
    saga_log.fail_from_write = 2  # the outcome

    record = await engine.run(script.definition(), {})

    assert record.status is SagaStatus.COMPLETED  # the claim stands; the client is told so
    assert saga_log.only().status is SagaStatus.RUNNING
    saga_log.fail_from_write = None
    taken = await take_over(saga_log)
    final = await engine.resume(script.definition(), taken)
    assert final.status is SagaStatus.COMPLETED
    assert script.calls == ["do a", "do b", "do c", "probe b", "do c"]


async def test_a_driver_paused_for_half_its_lease_writes_before_its_next_step(
    engine, saga_log, script, clock
):
    async def pause(saga_id: str) -> None:
        clock.advance(LEASE / 2)

    script.meanwhile["do a"] = pause

    record = await engine.run(script.definition(), {})

    assert record.status is SagaStatus.COMPLETED
    assert saga_log.writes == 3  # the intent, the write after the pause, the outcome
    assert saga_log.phases()[:3] == [("a", "started"), ("a", "succeeded"), ("b", "started")]


async def test_log_down_after_a_pause_before_the_pivot_undoes_what_is_done(
    engine, saga_log, script, clock
):
    async def pause_and_lose_the_log(saga_id: str) -> None:
        clock.advance(LEASE / 2)
        saga_log.fail_from_write = 2

    script.meanwhile["do a"] = pause_and_lose_the_log

    with pytest.raises(StoreUnavailable):
        await engine.run(script.definition(), {})

    assert script.calls == ["do a", "undo a"]


async def test_log_down_after_a_pause_past_the_pivot_does_not_stop_the_saga(
    engine, saga_log, script, clock
):
    async def pause_and_lose_the_log(saga_id: str) -> None:
        clock.advance(LEASE / 2)
        saga_log.fail_from_write = 2

    script.meanwhile["do b"] = pause_and_lose_the_log

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


async def take_over(saga_log: MemorySagaLog) -> SagaRecord:
    """The saga's lease ran out and a recoverer takes it."""
    record = saga_log.only()
    saga_log.lapsed.add(record.saga_id)
    taken = await saga_log.acquire(record.saga_id, "recoverer", parked=False)
    assert taken is not None
    return taken


async def crash_after(step: str, saga_log: MemorySagaLog, script: Script) -> SagaRecord:
    crashing = SagaEngine(saga_log, store_attempts=3, backoff_seconds=0, after_step=die_after(step))
    with pytest.raises(Dies):
        await crashing.run(script.definition(), {})
    return await take_over(saga_log)


async def test_recovery_before_the_pivot_landed_undoes_it_and_every_step_before(
    engine, saga_log, script
):
    """The log does not say how far the driver got; every undo is safe to run anyway."""
    record = await crash_after("a", saga_log, script)

    final = await engine.resume(script.definition(), record)

    assert final.status is SagaStatus.COMPENSATED
    assert script.calls == ["do a", "probe b", "undo b", "undo a"]


async def test_recovery_after_the_pivot_landed_goes_forward(engine, saga_log, script):
    record = await crash_after("b", saga_log, script)

    final = await engine.resume(script.definition(), record)

    assert final.status is SagaStatus.COMPLETED
    assert script.calls == ["do a", "do b", "probe b", "do c"]


async def test_recovery_of_a_saga_that_ran_every_step_goes_forward_again(engine, saga_log, script):
    record = await crash_after("c", saga_log, script)

    final = await engine.resume(script.definition(), record)

    assert final.status is SagaStatus.COMPLETED
    assert script.calls == ["do a", "do b", "do c", "probe b", "do c"]
    assert ("b", "recovered") in saga_log.phases()


async def test_a_fenced_out_driver_acts_no_more(engine, saga_log, script):
    """A driver paused past its lease: its next write is refused and it acts no more."""
    record = await crash_after("a", saga_log, script)
    zombie = record.moved(record.updated_at, epoch=record.epoch - 1)

    with pytest.raises(LeaseLost):
        await engine.resume(script.definition(), zombie)

    assert script.calls == ["do a", "probe b"]


def recover_meanwhile(saga_log: MemorySagaLog, script: Script, clock: FakeClock, status):
    """While the driver is in a call it pauses past its lease; a recoverer takes the saga
    over and drives it to `status`."""

    async def recover(saga_id: str) -> None:
        clock.advance(LEASE)
        taken = await take_over(saga_log)
        recovered = await SagaEngine(saga_log, backoff_seconds=0).resume(script.definition(), taken)
        assert recovered.status is status

    return recover


async def test_a_driver_paused_past_its_lease_before_its_pivot_stops_there(
    engine, saga_log, script, clock
):
    script.meanwhile["do a"] = recover_meanwhile(saga_log, script, clock, SagaStatus.COMPENSATED)

    with pytest.raises(LeaseLost):
        await engine.run(script.definition(), {})

    assert script.calls == ["do a", "probe b", "undo b", "undo a"]  # no "do b" after the pause
    assert saga_log.only().status is SagaStatus.COMPENSATED


async def test_a_pivot_landing_after_a_takeover_compensated_is_undone(
    engine, saga_log, script, clock
):
    """A paused driver's claim lands after the recoverer looked and went backward."""
    recover = recover_meanwhile(saga_log, script, clock, SagaStatus.COMPENSATED)
    script.meanwhile["do b"] = recover  # "do b" lands once the recoverer is done

    with pytest.raises(LeaseLost):  # the client is told 503, not that the claim stands
        await engine.run(script.definition(), {})

    assert script.calls == ["do a", "do b", "probe b", "undo b", "undo a", "undo b"]
    assert saga_log.only().status is SagaStatus.COMPENSATED


async def test_a_pivot_landing_before_a_takeover_went_forward_succeeds(
    engine, saga_log, script, clock
):
    recover = recover_meanwhile(saga_log, script, clock, SagaStatus.COMPLETED)

    async def land_then_pause(saga_id: str) -> None:
        script.b_landed = True
        await recover(saga_id)

    script.meanwhile["do b"] = land_then_pause

    record = await engine.run(script.definition(), {})

    assert "b" in record.done  # the claim stands; the new driver finished the saga
    assert script.calls == ["do a", "do b", "probe b", "do c"]
    assert saga_log.only().status is SagaStatus.COMPLETED


async def test_operator_compensation_is_refused_once_the_pivot_landed(engine, saga_log, script):
    record = await crash_after("b", saga_log, script)

    with pytest.raises(SagaConflict):
        await engine.compensate(script.definition(), record)

    assert "undo b" not in script.calls


async def test_operator_compensation_undoes_a_saga_whose_pivot_did_not_land(
    engine, saga_log, script
):
    record = await crash_after("a", saga_log, script)

    final = await engine.compensate(script.definition(), record)

    assert final.status is SagaStatus.COMPENSATED
    assert script.calls == ["do a", "probe b", "undo b", "undo a"]
