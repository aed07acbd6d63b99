"""The saga engine: runs a saga definition step by step and keeps the saga log true.

On the success path the log is written twice: the intent (the saga, its payload and its
plan, in flight under a lease) before the first side effect, and the outcome (every
step's events) after the last. Between them each step leaves a fact keyed by the saga id
in its own store, and a recoverer reads those facts, not the log, to decide a saga's
direction: forward if the pivot landed, otherwise back through every step before it
(each undo is idempotent). A driver whose lease may have run out since its last write
(it was paused) writes again before its next side effect, and that write is fenced.

A store call is retried for up to `retry_seconds` while its store is away. A failure up
to the pivot undoes the completed steps in reverse and re-raises the original error; an
undo that cannot finish is retried in the background until it does, and the caller hears
that the saga is in doubt (InDoubt), not that nothing was taken. After the pivot the saga
only moves forward; a step that still fails is checked against its store (did it take
effect after all?); if its store stayed away the saga is left to recovery, which takes it
up again after a backoff, and only a step refused for good parks it for an operator.
Every write is fenced by the saga's epoch: a driver that lost its lease is refused at its
next write and acts no more, so one saga never has two drivers acting on it. A driver
that lost its saga answers its caller from what the new driver makes of it (`_became`).

Where each rule lives: whether a saga is past its pivot, what resuming it does, and what
undoing it undoes, in `SagaDefinition.past_pivot`, `.resumption` and `.to_undo`
(sagas/definition.py; `--dry-run` tells the same decision); the pending events and the
write after a pause in `Journal` (journal.py); retries and timeouts of one store call in
`StoreCalls` (store_calls.py); undoing, and retrying an undo in the background, in
`Compensation` (compensation.py); the payload as the log keeps it, decoded once per drive
for the steps, in `SagaDefinition.bind`; what a lost saga became, in `SagaDefinition.verdict`.
Here: a failure before the pivot in `_fail`, after it in `_forward`, `_defer` and `_park`; a
lost lease in `_lease_lost` and `_became`.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from orchestrator import metrics
from orchestrator.logs import SAGA_ID
from orchestrator.saga.compensation import Compensation
from orchestrator.saga.journal import Journal
from orchestrator.saga.retry_policy import DEFAULT_POLICY, RetryPolicy
from orchestrator.saga.store_calls import StoreCalls
from sagas.definition import Direction, P, SagaDefinition, Step, Verdict
from sagas.errors import (
    DomainError,
    InDoubt,
    LeaseLost,
    SagaConflict,
    StoreUnavailable,
    describe,
)
from sagas.ports import SagaLog
from sagas.records import Phase, SagaEvent, SagaRecord, SagaStatus

__all__ = ["AfterStep", "Outcome", "SagaEngine", "Stands", "describe", "new_saga_id"]

log = logging.getLogger(__name__)

AfterStep = Callable[[str], None]
Stands = Callable[[SagaRecord], None]


def new_saga_id() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True)
class Outcome:
    """How one drive of a saga ended: its last record and, if it was undone before its
    pivot (or is in doubt), the error its caller gets (`run` raises it; `resume` reports
    the record). `lost`: another driver has the saga now, and what it becomes is the
    answer (`run` waits for it; `resume` stops)."""

    record: SagaRecord
    failure: Exception | None = None
    lost: bool = False


class SagaEngine:
    def __init__(
        self,
        saga_log: SagaLog,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        lease_seconds: float = 60.0,
        policy: RetryPolicy = DEFAULT_POLICY,
        after_step: AfterStep | None = None,
    ) -> None:
        """`policy`: how long each action and compensation is retried while its store is
        away, pausing by its backoff between tries, and how long one try may take.

        `lease_seconds`: the saga log's lease. A driver that has not written for half of it
        writes again (and is fenced) before its next side effect.

        `after_step` is a test hook, called after each action succeeds (before its outcome
        is logged): the fault tests kill the process there.
        """
        self._log = saga_log
        self._clock = clock
        self._monotonic = monotonic
        self._sleep = sleep
        self._lease_seconds = lease_seconds
        self._checkpoint_after = lease_seconds / 2
        self._after_step = after_step
        self._calls = StoreCalls(policy, clock=clock, monotonic=monotonic, sleep=sleep)
        self._compensation = Compensation(
            saga_log,
            self._calls,
            clock=clock,
            sleep=sleep,
            new_journal=self._journal,
            lease_seconds=lease_seconds,
        )

    async def close(self) -> None:
        """Stop the background compensations (on shutdown): their sagas stay compensating
        in the log, and recovery finishes them once their lease runs out."""
        await self._compensation.close()

    # --- the three ways in ------------------------------------------------------------

    async def run(
        self,
        definition: SagaDefinition[P],
        payload: P,
        saga_id: str | None = None,
        *,
        stands: Stands | None = None,
    ) -> SagaRecord:
        """Run a new saga to its end and return its final record, or raise what ended it.

        `saga_id`: a fresh id the caller made (to name the saga in its answer), or None.
        If the first log write fails nothing has been touched, and StoreUnavailable
        propagates as it is.

        `stands` is called once the saga's outcome is settled before its end: its pivot
        took effect while this driver surely held the lease, so no other driver can undo
        it. The steps after the pivot only go forward (`_stand`).
        """
        journal = self._journal()
        record = await self._start(definition, payload, saga_id or new_saga_id(), journal)
        outcome = await self._drive(definition, record, Direction.FORWARD, stands, journal)
        if outcome.lost:
            outcome = await self._became(definition, outcome)
        if outcome.failure is not None:
            raise outcome.failure
        return outcome.record

    async def resume(self, definition: SagaDefinition[Any], record: SagaRecord) -> SagaRecord:
        """Drive a saga taken over from a dead or stalled driver to its end, the way
        `definition.resumption(record)` decides, and return its last record."""
        SAGA_ID.set(record.saga_id)
        direction = definition.resumption(record).direction
        record = definition.bind(record)
        try:
            outcome = await self._drive(definition, record, direction)
        except StoreUnavailable as error:  # the pivot's fact could not be read
            await self._left_to_recovery(record, record.step, error, self._journal())
            raise
        if outcome.lost:
            raise LeaseLost(f"saga {record.saga_id} is driven by someone else now")
        return outcome.record

    async def compensate(self, definition: SagaDefinition[Any], record: SagaRecord) -> SagaRecord:
        """Undo a saga on an operator's word; refused once its pivot has taken effect."""
        SAGA_ID.set(record.saga_id)
        record = definition.bind(record)
        if not record.compensating:
            if definition.past_pivot(record) or await self._calls.pivot_landed(definition, record):
                raise SagaConflict(
                    f"saga {record.saga_id} is past its pivot; it can only go forward"
                )
            record = self._up_to_pivot(definition, record)
        return (await self._drive(definition, record, Direction.BACKWARD)).record

    # --- starting, and one drive for every way in ---------------------------------------

    def _journal(self) -> Journal:
        return Journal(
            self._log, monotonic=self._monotonic, checkpoint_after=self._checkpoint_after
        )

    async def _start(
        self, definition: SagaDefinition[P], payload: P, saga_id: str, journal: Journal
    ) -> SagaRecord:
        """Write the intent: the saga in flight at its first step, before any side effect."""
        now = self._clock()
        first = definition.steps[0]
        SAGA_ID.set(saga_id)
        record = SagaRecord(
            saga_id=saga_id,
            name=definition.name,
            payload=definition.encode(payload),
            status=SagaStatus.RUNNING,
            step=first.name,
            created_at=now,
            updated_at=now,
            arguments=payload,
        )
        await journal.create(record, SagaEvent(now, first.name, Phase.STARTED))
        metrics.SAGAS_STARTED.labels(definition.name).inc()
        return record

    async def _drive(
        self,
        definition: SagaDefinition[Any],
        record: SagaRecord,
        direction: Direction,
        stands: Stands | None = None,
        journal: Journal | None = None,
    ) -> Outcome:
        """Drive a saga to its end in `direction`. By the pivot: its fact decides, and a
        saga whose pivot did not land is undone through the pivot."""
        journal = journal or self._journal()
        match direction:
            case Direction.NOTHING:
                return Outcome(record)
            case Direction.BACKWARD:
                return Outcome(await self._compensation.undo(definition, record, None, journal))
            case Direction.BY_THE_PIVOT:
                if not await self._calls.pivot_landed(definition, record):
                    record = self._up_to_pivot(definition, record)
                    return Outcome(await self._compensation.undo(definition, record, None, journal))
                at = self._clock()
                record = record.moved(at, step=definition.pivot, done=definition.through_pivot)
                try:
                    await journal.flush(record, SagaEvent(at, definition.pivot, Phase.RECOVERED))
                except LeaseLost as lost:
                    return self._lease_lost(record, lost)
        return await self._forward(definition, record, journal, stands)

    def _up_to_pivot(self, definition: SagaDefinition[Any], record: SagaRecord) -> SagaRecord:
        """A saga whose progress the log does not know, to be undone: through its pivot,
        every step before it may have taken effect (undoing one that did not is a no-op)."""
        return record.moved(self._clock(), step=definition.pivot, done=definition.before_pivot)

    # --- forward ----------------------------------------------------------------------

    async def _forward(
        self,
        definition: SagaDefinition[Any],
        record: SagaRecord,
        journal: Journal,
        stands: Stands | None = None,
    ) -> Outcome:
        """Run the steps not done yet, in order, then complete the saga. A step that fails
        before the pivot undoes the saga; past it, a step whose effect is not in its store
        after its tries parks the saga, one whose effect landed counts as done."""
        for step in definition.steps_left(record):
            record = self._begin(record, step, journal)
            if (stopped := await self._checkpoint(definition, record, journal)) is not None:
                return stopped
            try:
                record = await self._calls.attempt(record, step.name, step.action, journal)
            except LeaseLost as lost:
                return self._lease_lost(record, lost)
            except Exception as error:
                if not definition.past_pivot(record):
                    return await self._fail(definition, record, error, journal, failed=step)
                if not await self._calls.landed(step, record):
                    if isinstance(error, StoreUnavailable):
                        return await self._defer(definition, record, step, error, journal)
                    return await self._park(definition, record, step, error, journal)
                log.warning(
                    "saga %s: %s took effect, its answer was lost (%s)",
                    record.saga_id,
                    step.name,
                    describe(error),
                )
            record = self._succeeded(record, step, journal)
            if (
                stopped := await self._stand(definition, record, step, journal, stands)
            ) is not None:
                return stopped
        return await self._complete(definition, record, journal)

    def _begin(self, record: SagaRecord, step: Step[Any], journal: Journal) -> SagaRecord:
        if record.step == step.name:  # resumed at the step it was on
            return record
        at = self._clock()
        journal.note(SagaEvent(at, step.name, Phase.STARTED))
        return record.moved(at, step=step.name)

    def _succeeded(self, record: SagaRecord, step: Step[Any], journal: Journal) -> SagaRecord:
        if self._after_step is not None:
            self._after_step(step.name)
        at = self._clock()
        journal.note(SagaEvent(at, step.name, Phase.SUCCEEDED))
        return record.moved(at, done=(*record.done, step.name), attempts=0)

    async def _stand(
        self,
        definition: SagaDefinition[Any],
        record: SagaRecord,
        step: Step[Any],
        journal: Journal,
        stands: Stands | None,
    ) -> Outcome | None:
        """After the pivot took effect: say the saga stands once no other driver can have
        taken it over (and found the pivot not landed, and gone backward) meanwhile.

        If the last write renewed the lease less than half a lease ago, none can. Else a
        fenced write must say so first; while the log is away nothing can be known, and
        after the retries the drive stops there, in doubt: the saga stays in flight, and
        whoever takes it up next decides by the pivot's fact. None: go on.
        """
        if stands is None or step.name != definition.pivot:
            return None
        if not journal.lease_held():
            try:
                await self._write_through(record, journal)
            except LeaseLost as lost:
                return self._lease_lost(record, lost)
            except StoreUnavailable as error:
                log.warning("saga %s: cannot tell whether it stands (%s)", record.saga_id, error)
                in_doubt = InDoubt(record.saga_id, "the saga log is unavailable")
                in_doubt.__cause__ = error
                return Outcome(record, in_doubt)
        stands(record)
        return None

    async def _write_through(self, record: SagaRecord, journal: Journal) -> None:
        """A fenced write the drive cannot go on without, retried while the log is away."""
        give_up_at = self._monotonic() + self._calls.policy.retry_seconds
        attempt = 0
        while True:
            attempt += 1
            try:
                await journal.flush(record)
                return
            except StoreUnavailable:
                pause = self._calls.policy.backoff.delay(attempt)
                if self._monotonic() + pause >= give_up_at:
                    raise
                await self._sleep(pause)

    async def _checkpoint(
        self, definition: SagaDefinition[Any], record: SagaRecord, journal: Journal
    ) -> Outcome | None:
        """The write after a pause, before the next side effect. None: go on."""
        try:
            await journal.checkpoint_if_due(record)
        except LeaseLost as lost:
            return self._lease_lost(record, lost)
        except StoreUnavailable as error:
            if not definition.past_pivot(record):
                # Without a live lease the next step must not run: undo what is done.
                last = record.done[-1] if record.done else record.step
                record = record.moved(record.updated_at, step=last)
                return await self._fail(definition, record, error, journal)
            # Past the pivot the claim stands: the events wait for the next write.
            log.warning("saga %s: log write failed (%s)", record.saga_id, error)
        return None

    async def _complete(
        self, definition: SagaDefinition[Any], record: SagaRecord, journal: Journal
    ) -> Outcome:
        at = self._clock()
        record = record.moved(at, status=SagaStatus.COMPLETED, error="")
        finished = SagaEvent(at, record.step, Phase.FINISHED)
        return await self._end_past_pivot(definition, record, journal, finished)

    async def _defer(
        self,
        definition: SagaDefinition[Any],
        record: SagaRecord,
        step: Step[Any],
        error: Exception,
        journal: Journal,
    ) -> Outcome:
        """Past the pivot, a step's store stayed away through every try: the claim stands,
        and the saga stays in flight for recovery to drive forward, after a backoff that
        grows with each deferral (never longer than a lease). No operator is needed."""
        try:
            record = await self._left_to_recovery(record, step.name, error, journal)
        except LeaseLost as lost:
            return self._lease_lost(record, lost)
        return Outcome(record)

    async def _left_to_recovery(
        self, record: SagaRecord, step: str, error: Exception, journal: Journal
    ) -> SagaRecord:
        """The saga stays in flight, its lease cut to the deferral's backoff."""
        at = self._clock()
        record = record.moved(at, step=step, error=describe(error), deferrals=record.deferrals + 1)
        retry_in = self._calls.policy.deferral_seconds(record.deferrals, self._lease_seconds)
        log.warning(
            "saga %s: %s left to recovery, in %.1fs: %s",
            record.saga_id,
            step,
            retry_in,
            describe(error),
        )
        deferred = SagaEvent(at, step, Phase.DEFERRED, describe(error))
        await journal.flush(record, deferred, best_effort=True, lease_seconds=retry_in)
        return record

    async def _park(
        self,
        definition: SagaDefinition[Any],
        record: SagaRecord,
        step: Step[Any],
        error: Exception,
        journal: Journal,
    ) -> Outcome:
        """Past the pivot, a step refused for good (not a store away): the claim stands,
        an operator finishes the saga."""
        at = self._clock()
        record = record.moved(at, status=SagaStatus.FAILED, step=step.name, error=describe(error))
        log.error("saga %s parked as failed at %s: %s", record.saga_id, step.name, describe(error))
        failed = SagaEvent(at, step.name, Phase.FAILED, describe(error))
        return await self._end_past_pivot(definition, record, journal, failed)

    async def _end_past_pivot(
        self, definition: SagaDefinition[Any], record: SagaRecord, journal: Journal, last: SagaEvent
    ) -> Outcome:
        """The drive's last write. The claim stands whoever finishes the saga: if the log
        is away the saga stays in flight there, and a recoverer finds the facts."""
        try:
            await journal.flush(record, last, best_effort=True)
        except LeaseLost as lost:
            return self._lease_lost(record, lost)
        metrics.saga_ended(record, self._clock())
        return Outcome(record)

    # --- a lost lease -----------------------------------------------------------------

    def _lease_lost(
        self, record: SagaRecord, lost: LeaseLost, failure: Exception | None = None
    ) -> Outcome:
        """A write was refused: another driver has the saga, and this one acts no more.
        What the saga becomes is the new driver's to decide, from the facts."""
        log.warning("saga %s: %s; it is no longer ours to drive", record.saga_id, lost)
        return Outcome(record, failure or lost, lost=True)

    async def _became(self, definition: SagaDefinition[Any], lost: Outcome) -> Outcome:
        """A caller's answer for a saga its driver lost: what the new driver makes of it.

        The new driver reads the pivot's fact and writes which way it goes: forward (the
        claim stands, whatever this driver last saw fail) or back (undone: the failure
        this driver met if a store's, else LeaseLost). The log is read, backing off, for up to
        `retry_seconds`; a saga still open after that (undecided, still being undone, or
        its record gone) is in doubt.
        """
        saga_id = lost.record.saga_id
        give_up_at = self._monotonic() + self._calls.policy.retry_seconds
        attempt = 0
        while True:
            attempt += 1
            try:
                current = await self._log.load(saga_id)
            except StoreUnavailable:
                current = None
            match definition.verdict(current):
                case Verdict.STANDS:
                    assert current is not None
                    return Outcome(definition.bind(current))
                case Verdict.UNDONE:  # a store's failure, or the takeover, is the answer
                    assert current is not None
                    failure = lost.failure
                    if not isinstance(failure, StoreUnavailable):
                        failure = LeaseLost(f"saga {saga_id} was undone by another driver")
                    return Outcome(current, failure)
            pause = self._calls.policy.backoff.delay(attempt)
            if self._monotonic() + pause >= give_up_at:
                why = "it was taken over, and its new driver has not settled it yet"
                return Outcome(lost.record, InDoubt(saga_id, why))
            await self._sleep(pause)

    # --- a failure before the pivot ----------------------------------------------------

    async def _fail(
        self,
        definition: SagaDefinition[Any],
        record: SagaRecord,
        error: Exception,
        journal: Journal,
        *,
        failed: Step[Any] | None = None,
    ) -> Outcome:
        """A failure up to the pivot: undo what is done, and end with `error`.

        A business answer the stores gave (out of stock) reaches the client as itself, even
        if the saga's record is lost or taken over meanwhile (the new driver, or the
        settlement of abandoned holds, finishes the undo): it is true whatever the undo
        becomes. Any other failure is the answer only once the undo is done; a saga taken
        over meanwhile is answered by what its new driver makes of it, and one whose undo
        cannot finish now is in doubt (its undo is retried in the background at once, not
        after a lease).
        """
        try:
            record = await self._compensation.undo(
                definition, record, error, journal, failed=failed
            )
        except LeaseLost as lost:
            error.add_note(f"compensation left to recovery: {lost}")
            if isinstance(error, DomainError):
                log.warning("saga %s: compensation left to recovery: %s", record.saga_id, lost)
                return Outcome(record, error)
            return self._lease_lost(record, lost, failure=error)
        if record.status is SagaStatus.COMPENSATING:
            self._compensation.keep_on(definition, record)
            if not isinstance(error, DomainError):
                in_doubt = InDoubt(record.saga_id, f"{describe(error)}; its undo is not finished")
                in_doubt.__cause__ = error
                return Outcome(record, in_doubt)
        return Outcome(record, error)
