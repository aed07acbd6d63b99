"""The saga engine's ordering, compensation and parking rules, with scripted steps."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from typing import Any

import pytest

from orchestrator.saga import compensation
from orchestrator.saga.backoff import Backoff
from orchestrator.saga.engine import SagaEngine
from orchestrator.saga.retry_policy import RetryPolicy
from sagas.definition import Direction, SagaDefinition, Step, plan
from sagas.errors import InDoubt, LeaseLost, OutOfStock, SagaConflict, StoreUnavailable
from sagas.records import Phase, SagaRecord, SagaStatus
from sagas.records import tries as tries_in
from tests.unit.fakes import FakeClock, MemorySagaLog, Script

LEASE = 10.0
RETRY = 1.0  # seconds of retries at a step, on the fake clock


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
async def engine(saga_log: MemorySagaLog, clock: FakeClock):
    engine = SagaEngine(
        saga_log,
        monotonic=clock,
        sleep=clock.sleep,
        lease_seconds=LEASE,
        policy=RetryPolicy(
            retry_seconds=RETRY, backoff=Backoff(base_seconds=0.05, cap_seconds=0.2)
        ),
    )
    yield engine
    await engine.close()


async def settled(saga_log: MemorySagaLog) -> SagaStatus:
    """The saga's status once background work has had its turns (the clock is fake)."""
    for _ in range(1000):
        if not saga_log.only().status.in_flight:
            break
        await asyncio.sleep(0)
    return saga_log.only().status


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
    script.down("do b")

    with pytest.raises(StoreUnavailable):
        await engine.run(script.definition(), {})

    assert script.tried() == ["do a", "do b", "undo b", "undo a"]
    assert saga_log.only().status is SagaStatus.COMPENSATED


async def test_retries_span_the_retry_time_not_a_count(engine, saga_log, script, clock):
    script.down("do b")
    started = clock.now

    with pytest.raises(StoreUnavailable):
        await engine.run(script.definition(), {})

    assert script.calls.count("do b") > 3
    assert RETRY / 2 < clock.now - started <= RETRY


async def test_store_never_reached_is_not_undone(engine, saga_log, script):
    script.down("do b", maybe_applied=False)

    with pytest.raises(StoreUnavailable):
        await engine.run(script.definition(), {})

    assert script.tried() == ["do a", "do b", "undo a"]


async def test_one_ambiguous_try_makes_the_whole_step_ambiguous(engine, saga_log, script):
    script.fail("do b", unavailable())
    script.down("do b", maybe_applied=False)

    with pytest.raises(StoreUnavailable):
        await engine.run(script.definition(), {})

    assert script.tried()[-2:] == ["undo b", "undo a"]


async def test_a_store_back_within_the_attempts_is_no_failure(engine, saga_log, script):
    script.fail("do b", unavailable())

    record = await engine.run(script.definition(), {})

    assert record.status is SagaStatus.COMPLETED
    assert ("b", "retrying") in saga_log.phases()


async def test_failing_compensation_reraises_the_original_and_goes_on_in_the_background(
    engine, saga_log, script
):
    original = OutOfStock("x")
    script.fail("do b", original)
    script.down("undo a")

    with pytest.raises(OutOfStock) as raised:
        await engine.run(script.definition(), {})

    assert raised.value is original
    assert any("compensation a failed" in note for note in raised.value.__notes__)
    assert script.tried() == ["do a", "do b", "undo a"]
    record = saga_log.only()
    assert record.status is SagaStatus.COMPENSATING  # in flight: the undo is retried
    assert record.done == ("a",)
    assert "undo a failed" in record.error
    assert ("a", "compensation_failed") in saga_log.phases()

    script.up("undo a")  # the store answers again: no lease has to run out first

    assert await settled(saga_log) is SagaStatus.COMPENSATED
    assert saga_log.only().recoveries == 0


async def test_background_compensation_stops_once_another_driver_has_the_saga(
    engine, saga_log, script
):
    script.fail("do b", OutOfStock("x"))
    script.down("undo a")
    with pytest.raises(OutOfStock):
        await engine.run(script.definition(), {})

    await take_over(saga_log)
    for _ in range(100):
        await asyncio.sleep(0)
    tries = script.calls.count("undo a")
    for _ in range(100):
        await asyncio.sleep(0)

    assert script.calls.count("undo a") == tries  # fenced out: it tries no more


async def test_ambiguous_step_whose_undo_fails_keeps_earlier_steps(engine, saga_log, script):
    """If b may have landed and cannot be undone, undoing a would leave b's effect orphaned."""
    script.down("do b")
    script.down("undo b")

    with pytest.raises(InDoubt):  # b may stand in its store until its undo is done
        await engine.run(script.definition(), {})
    for _ in range(100):  # the background retries meanwhile
        await asyncio.sleep(0)

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


async def test_a_step_whose_effect_landed_but_whose_answer_was_lost_is_not_parked(
    engine, saga_log, script
):
    script.answers_lost.add("do c")

    record = await engine.run(script.definition(), {})

    assert script.tried() == ["do a", "do b", "do c", "probe c"]
    assert record.status is SagaStatus.COMPLETED
    assert saga_log.only().status is SagaStatus.COMPLETED


async def test_a_business_answer_reaches_the_caller_when_the_log_lost_the_saga(
    engine, saga_log, script
):
    """Redis loses the record mid-saga: the compensation's log write is refused, and the
    stores' answer (out of stock) is still what the caller gets, not "unavailable"."""

    async def lose_the_record(saga_id: str) -> None:
        del saga_log.records[saga_id]

    script.meanwhile["do b"] = lose_the_record
    script.fail("do b", OutOfStock("x"))

    with pytest.raises(OutOfStock) as raised:
        await engine.run(script.definition(), {})

    assert any("left to recovery" in note for note in raised.value.__notes__)


async def test_a_refusal_that_changed_nothing_keeps_no_history(engine, saga_log, script):
    script.fail("do a", OutOfStock("x"))

    with pytest.raises(OutOfStock):
        await engine.run(script.definition(), {})

    record = saga_log.only()
    assert record.status is SagaStatus.REFUSED
    assert saga_log.refused_ids == {record.saga_id}
    assert script.calls == ["do a"]


async def test_a_refusal_after_a_step_took_effect_keeps_its_history(engine, saga_log, script):
    script.fail("do b", OutOfStock("x"))

    with pytest.raises(OutOfStock):
        await engine.run(script.definition(), {})

    assert saga_log.refused_ids == set()
    assert saga_log.phases()[-1] == ("a", "finished")
    assert saga_log.only().status is SagaStatus.COMPENSATED  # "a" was undone


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


def test_a_pivot_must_be_a_step_with_a_fact_check(script):
    definition = script.definition()
    with pytest.raises(ValueError, match="not a step"):
        replace(definition, name="bad", pivot="nope")
    with pytest.raises(ValueError, match="fact check"):
        replace(definition, name="bad", pivot="a")


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
    crashing = SagaEngine(saga_log, policy=RetryPolicy(retry_seconds=0), after_step=die_after(step))
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


@pytest.mark.parametrize("crashed_after", ["a", "b"])
async def test_resume_by_the_pivot_runs_the_steps_its_dry_run_names(
    engine, saga_log, script, crashed_after
):
    """--dry-run tells `resumption` and `resume` acts on it: the pivot's fact decides, then
    the steps named forward run if it landed, else the steps named to undo."""
    definition = script.definition()
    record = await crash_after(crashed_after, saga_log, script)
    decided = definition.resumption(record)
    calls_before = len(script.calls)

    await engine.resume(definition, record)

    assert decided.direction is Direction.BY_THE_PIVOT
    assert plan(definition, record) == "check whether b took effect; if so drive forward: " + (
        "c; if not compensate: undo b, a"
    )
    done = [f"do {step}" for step in decided.forward] if script.b_landed else []
    undone = [] if script.b_landed else [f"undo {step}" for step in decided.undo]
    assert script.calls[calls_before:] == ["probe b", *done, *undone]


async def test_resume_past_the_pivot_runs_the_steps_its_dry_run_names(engine, saga_log, script):
    definition = script.definition()
    script.down("do c")
    deferred = await engine.run(definition, {})
    script.up("do c")
    saga_log.lapsed.add(deferred.saga_id)
    record = await saga_log.acquire(deferred.saga_id, "recoverer", parked=False)
    assert record is not None
    decided = definition.resumption(record)
    calls_before = len(script.calls)

    await engine.resume(definition, record)

    assert (decided.direction, plan(definition, record)) == (Direction.FORWARD, "drive forward: c")
    assert script.calls[calls_before:] == [f"do {step}" for step in decided.forward]


def test_the_dry_run_of_a_saga_compensating_or_finished(script):
    definition = script.definition()
    base = SagaRecord("id", "test", {}, SagaStatus.COMPENSATING, "b", 0.0, 0.0)
    compensating = base.moved(1.0, done=("a",), compensating=True)
    assert plan(definition, compensating) == "compensate: undo b, a"
    assert plan(definition, compensating.moved(2.0, step="a")) == "compensate: undo a"
    finished = compensating.moved(3.0, status=SagaStatus.COMPENSATED, done=())
    assert plan(definition, finished) == "nothing: the saga is compensated"


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
        recovered = await SagaEngine(saga_log, policy=RetryPolicy(retry_seconds=0)).resume(
            script.definition(), taken
        )
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

    # The recoverer's undo left a tombstone: the late "do b" took nothing.
    assert script.calls == ["do a", "do b", "probe b", "undo b", "undo a"]
    assert not script.b_landed
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


async def test_a_try_cut_by_its_timeout_is_a_store_that_did_not_answer(saga_log, script):
    """Whatever the driver raises when its call is cancelled (PyMongo's server selection
    can raise RuntimeError), a try that ran out of time is a 503 whose step may have
    applied, not a 500."""

    async def garble_the_cancellation(saga_id: str) -> None:
        try:
            await asyncio.Event().wait()  # a store that never answers
        except asyncio.CancelledError:
            raise RuntimeError("Lock is not acquired") from None

    script.meanwhile["do b"] = garble_the_cancellation
    engine = SagaEngine(saga_log, policy=RetryPolicy(retry_seconds=0, step_timeout_seconds=0.01))

    with pytest.raises(StoreUnavailable):
        await engine.run(script.definition(), {})

    assert script.calls == ["do a", "do b", "undo b", "undo a"]


async def test_a_try_cut_by_its_timeout_is_told_as_one_whatever_the_driver_said(saga_log, script):
    """PyMongo answers a cancelled call with its own "operation cancelled", which reads
    as the store being away: the history says the step's time ran out."""

    async def answer_the_cancellation_as_the_driver(saga_id: str) -> None:
        try:
            await asyncio.Event().wait()  # a store that never answers
        except asyncio.CancelledError:
            raise StoreUnavailable("mongodb") from RuntimeError("operation cancelled")

    script.meanwhile["do b"] = answer_the_cancellation_as_the_driver
    engine = SagaEngine(saga_log, policy=RetryPolicy(retry_seconds=0, step_timeout_seconds=0.01))

    with pytest.raises(StoreUnavailable):
        await engine.run(script.definition(), {})

    (events,) = saga_log.events.values()
    (failed,) = [event for event in events if event.phase is Phase.FAILED]
    assert (failed.step, failed.error) == (
        "b",
        "StoreUnavailable: b is unavailable (TimeoutError: no answer within the step "
        "timeout, 0.01s)",
    )


async def test_a_saga_stands_once_its_pivot_landed_before_its_last_steps(engine, saga_log, script):
    """The caller can answer at the pivot; the steps after it run on."""
    stood: list[tuple[str, ...]] = []

    async def look(saga_id: str) -> None:
        assert len(stood) == 1  # told before "do c" ran

    script.meanwhile["do c"] = look

    record = await engine.run(script.definition(), {}, stands=lambda r: stood.append(r.done))

    assert stood == [("a", "b")]
    assert record.status is SagaStatus.COMPLETED
    assert saga_log.writes == 2  # the lease was fresh: no write to say it stands


async def test_a_pivot_landing_late_in_the_lease_stands_only_after_a_fenced_write(
    engine, saga_log, script, clock
):
    stood: list[int] = []

    async def pause(saga_id: str) -> None:
        clock.advance(LEASE / 2)

    script.meanwhile["do b"] = pause

    await engine.run(script.definition(), {}, stands=lambda r: stood.append(saga_log.writes))

    assert stood == [2]  # the intent, then the write that found the lease still ours
    assert saga_log.writes == 3


async def test_a_pivot_landing_after_a_takeover_compensated_never_stands(
    engine, saga_log, script, clock
):
    stood: list[SagaRecord] = []
    script.meanwhile["do b"] = recover_meanwhile(saga_log, script, clock, SagaStatus.COMPENSATED)

    with pytest.raises(LeaseLost):
        await engine.run(script.definition(), {}, stands=stood.append)

    assert stood == []
    assert saga_log.only().status is SagaStatus.COMPENSATED


async def test_a_saga_undone_before_its_pivot_never_stands(engine, saga_log, script):
    stood: list[SagaRecord] = []
    script.fail("do b", OutOfStock("x"))

    with pytest.raises(OutOfStock):
        await engine.run(script.definition(), {}, stands=stood.append)

    assert stood == []


@dataclass(frozen=True)
class Order:
    item: str


async def test_a_drive_decodes_the_stored_payload_once_and_every_step_takes_it(engine, saga_log):
    """A run hands the steps the caller's typed payload; a resume decodes the stored one
    once, whatever number of steps and checks it runs."""
    decoded: list[dict[str, Any]] = []
    took: list[Order] = []

    def decode(stored) -> Order:
        decoded.append(dict(stored))
        return Order(stored["item"])

    async def step(saga_id: str, order: Order) -> None:
        took.append(order)

    async def not_landed(saga_id: str, order: Order) -> bool:
        took.append(order)
        return False

    definition = SagaDefinition(
        "order",
        (Step("a", step, step), Step("b", step, step, landed=not_landed), Step("c", step)),
        pivot="b",
        encode=lambda order: {"item": order.item},
        decode=decode,
    )
    crashing = SagaEngine(saga_log, policy=RetryPolicy(retry_seconds=0), after_step=die_after("a"))
    with pytest.raises(Dies):
        await crashing.run(definition, Order("x"))
    assert (decoded, took) == ([], [Order("x")])

    record = await take_over(saga_log)
    final = await engine.resume(definition, record)

    assert record.payload == {"item": "x"}
    assert final.status is SagaStatus.COMPENSATED
    assert decoded == [{"item": "x"}]
    assert took == [Order("x")] * 4  # a, then the check of b, the undo of b, the undo of a


# --- a driver that loses its saga answers from what the saga became (issue 21) -------


def land_then_recover(saga_log: MemorySagaLog, script: Script, clock: FakeClock, status):
    """The pivot lands, then its driver pauses past its lease and a recoverer takes the
    saga over, finds the pivot's fact and drives the saga to `status`."""
    recover = recover_meanwhile(saga_log, script, clock, status)

    async def land_then_pause(saga_id: str) -> None:
        script.b_landed = True
        await recover(saga_id)

    return land_then_pause


async def test_a_driver_fenced_out_while_undoing_answers_that_the_claim_stands(
    engine, saga_log, script, clock
):
    """The pivot's try timed out (its answer lost) while the driver was paused; the
    recoverer found the claim and completed it; the driver's undo is fenced out. Its
    client must hear that the claim stands, not the pivot's error."""
    script.answers_lost.add("do b")
    script.meanwhile["do b"] = land_then_recover(saga_log, script, clock, SagaStatus.COMPLETED)

    record = await engine.run(script.definition(), {})

    assert "b" in record.done
    assert saga_log.only().status is SagaStatus.COMPLETED
    assert "undo b" not in script.calls


async def test_a_driver_fenced_out_while_undoing_answers_unavailable_once_undone(
    engine, saga_log, script, clock
):
    script.down("do b")
    script.meanwhile["do b"] = recover_meanwhile(saga_log, script, clock, SagaStatus.COMPENSATED)

    with pytest.raises(StoreUnavailable):
        await engine.run(script.definition(), {})

    assert saga_log.only().status is SagaStatus.COMPENSATED


async def test_a_driver_fenced_out_before_the_new_driver_decides_answers_in_doubt(
    engine, saga_log, script, clock
):
    """The recoverer took the saga and has not written what it found yet: nothing is
    known, and the answer says so."""

    async def take_it_and_look_no_further(saga_id: str) -> None:
        clock.advance(LEASE)
        await take_over(saga_log)

    script.answers_lost.add("do b")
    script.meanwhile["do b"] = take_it_and_look_no_further

    with pytest.raises(InDoubt):
        await engine.run(script.definition(), {})


async def test_a_late_pivot_whose_stand_cannot_be_written_is_in_doubt(
    engine, saga_log, script, clock
):
    """The pivot landed late in the lease, after a recoverer took the saga over (it may
    have looked before the pivot landed, and go backward), and the log is away from this
    driver: it cannot know, so it neither says the claim stands nor goes on to confirm."""
    stood: list[SagaRecord] = []

    async def taken_over_then_the_log_is_away(saga_id: str) -> None:
        clock.advance(LEASE)
        await take_over(saga_log)
        saga_log.fail_from_write = saga_log.writes + 1

    script.meanwhile["do b"] = taken_over_then_the_log_is_away

    with pytest.raises(InDoubt):
        await engine.run(script.definition(), {}, stands=stood.append)

    assert stood == []
    assert "do c" not in script.calls


async def test_the_lease_is_counted_from_when_a_write_was_sent(engine, saga_log, script, clock):
    """A write whose answer came back late renewed the lease when it ran, not when the
    driver heard of it: a pivot landing after that much time needs a fenced write."""
    stood: list[int] = []
    slow_write = saga_log._write

    async def answered_late(record, events) -> None:
        await slow_write(record, events)
        if saga_log.writes == 1:  # the intent's answer takes most of a lease
            clock.advance(LEASE * 0.6)

    saga_log._write = answered_late

    await engine.run(script.definition(), {}, stands=lambda r: stood.append(saga_log.writes))

    assert stood == [2]  # the intent, then a fenced write before the claim stands


# --- past the pivot, a store away is retried by recovery, not parked (issue 21) -------


async def test_past_the_pivot_a_store_away_leaves_the_saga_to_recovery(engine, saga_log, script):
    script.down("do c")

    record = await engine.run(script.definition(), {})

    assert "undo b" not in script.calls and "undo a" not in script.calls
    stored = saga_log.only()
    assert stored.status is SagaStatus.RUNNING  # in flight: recovery drives it forward
    assert (stored.step, stored.deferrals) == ("c", 1)
    assert saga_log.lease_seconds[stored.saga_id] < LEASE  # retried sooner than a crash
    assert record.status is SagaStatus.RUNNING


async def test_past_the_pivot_a_step_refused_for_good_is_parked(engine, saga_log, script):
    script.fail("do c", SagaConflict("no live hold to confirm"))

    record = await engine.run(script.definition(), {})

    assert record.status is SagaStatus.FAILED
    assert saga_log.only().status is SagaStatus.FAILED


# --- a saga that keeps failing keeps a bounded record (issue 21) ----------------------


async def test_an_undo_failing_for_long_grows_neither_its_error_nor_its_history(
    engine, saga_log, script
):
    script.down("do b")
    script.down("undo b")
    with pytest.raises(InDoubt):
        await engine.run(script.definition(), {})

    for _ in range(3000):  # many background tries
        await asyncio.sleep(0)
    tries = script.calls.count("undo b")
    script.up("undo b")
    assert await settled(saga_log) is SagaStatus.COMPENSATED

    assert tries > 200
    record = saga_log.only()
    assert len(record.error) < 400
    (events,) = saga_log.events.values()
    assert len(events) < 40
    tried = [call for call in script.calls if not call.startswith("probe")]
    assert tries_in(events) == len(tried)  # every try counted


async def test_undos_retried_in_the_background_are_capped(engine, saga_log, script, monkeypatch):
    """During a long outage each claim in doubt would add a task retrying its undo; past
    the cap the saga waits for recovery instead (its record says compensating)."""
    monkeypatch.setattr(compensation, "BACKGROUND_UNDOS", 1)
    script.down("do b")
    script.down("undo b")
    for _ in range(2):
        with pytest.raises(InDoubt):
            await engine.run(script.definition(), {})
    first, second = saga_log.records
    attempts = {saga: saga_log.records[saga].attempts for saga in (first, second)}

    for _ in range(200):  # the background retries, each written to the log
        await asyncio.sleep(0)

    assert saga_log.records[first].attempts > attempts[first]
    assert saga_log.records[second].attempts == attempts[second]
    assert saga_log.records[second].status is SagaStatus.COMPENSATING  # recovery's to finish
