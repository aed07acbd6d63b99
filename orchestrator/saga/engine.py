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
undo that cannot finish is retried in the background until it does. After the pivot the
saga only moves forward; a step that still fails is checked against its store (did it
take effect after all?) and only then parked as failed for an operator.
Every write is fenced by the saga's epoch: a driver that lost its lease is refused at its
next write and acts no more, so one saga never has two drivers acting on it.

Where each rule lives: what resuming a saga does, and whether it is past its pivot, in
`SagaDefinition.resumption` and `.past_pivot` (sagas/definition.py, also read by
`--dry-run`); the pending events and the write after a pause in `Journal`
(journal.py); a failure before the pivot in `_fail`, after it in `_forward` and
`_park`; a lost lease in `_lease_lost`; the undo order in `_backward`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator import metrics
from orchestrator.logs import SAGA_ID
from orchestrator.saga.journal import Journal
from orchestrator.saga.retry_policy import DEFAULT_POLICY, RetryPolicy
from sagas.definition import Action, Direction, SagaDefinition, Step
from sagas.errors import (
    DomainError,
    LeaseLost,
    SagaConflict,
    StoreUnavailable,
    describe,
    may_have_applied,
)
from sagas.ports import SagaLog
from sagas.records import Phase, SagaEvent, SagaRecord, SagaStatus

__all__ = ["AfterStep", "Outcome", "SagaEngine", "describe", "new_saga_id"]

log = logging.getLogger(__name__)

AfterStep = Callable[[str], None]


def new_saga_id() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True)
class Outcome:
    """How one drive of a saga ended: its last record and, if it was undone before its
    pivot, the error that made it undo (`run` raises it; `resume` reports the record)."""

    record: SagaRecord
    failure: Exception | None = None


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
        self._checkpoint_after = lease_seconds / 2
        self._policy = policy
        self._after_step = after_step
        self._compensating: set[asyncio.Task[None]] = set()  # undos retried in the background

    async def close(self) -> None:
        """Stop the background compensations (on shutdown): their sagas stay compensating
        in the log, and recovery finishes them once their lease runs out."""
        for task in self._compensating:
            task.cancel()
        await asyncio.gather(*self._compensating, return_exceptions=True)

    # --- the three ways in ------------------------------------------------------------

    async def run(
        self, definition: SagaDefinition, payload: Mapping[str, Any], saga_id: str | None = None
    ) -> SagaRecord:
        """Run a new saga to its end and return its final record, or raise what ended it.

        `saga_id`: a fresh id the caller made (to name the saga in its answer), or None.
        If the first log write fails nothing has been touched, and StoreUnavailable
        propagates as it is.
        """
        record = await self._start(definition, payload, saga_id or new_saga_id())
        outcome = await self._forward(definition, record, self._journal())
        if outcome.failure is not None:
            raise outcome.failure
        return outcome.record

    async def resume(self, definition: SagaDefinition, record: SagaRecord) -> SagaRecord:
        """Drive a saga taken over from a dead or stalled driver to its end, the way
        `definition.resumption(record)` decides, and return its last record."""
        SAGA_ID.set(record.saga_id)
        return (await self._drive(definition, record)).record

    async def compensate(self, definition: SagaDefinition, record: SagaRecord) -> SagaRecord:
        """Undo a saga on an operator's word; refused once its pivot has taken effect."""
        SAGA_ID.set(record.saga_id)
        if not record.compensating:
            if definition.past_pivot(record) or await self._pivot_landed(definition, record):
                raise SagaConflict(
                    f"saga {record.saga_id} is past its pivot; it can only go forward"
                )
            record = self._up_to_pivot(definition, record)
        return await self._backward(definition, record, None, self._journal())

    # --- starting and taking over -----------------------------------------------------

    def _journal(self) -> Journal:
        return Journal(
            self._log, monotonic=self._monotonic, checkpoint_after=self._checkpoint_after
        )

    async def _start(
        self, definition: SagaDefinition, payload: Mapping[str, Any], saga_id: str
    ) -> SagaRecord:
        """Write the intent: the saga in flight at its first step, before any side effect."""
        now = self._clock()
        first = definition.steps[0]
        SAGA_ID.set(saga_id)
        record = SagaRecord(
            saga_id=saga_id,
            name=definition.name,
            payload=dict(payload),
            status=SagaStatus.RUNNING,
            step=first.name,
            created_at=now,
            updated_at=now,
        )
        await self._log.create(record, [SagaEvent(now, first.name, Phase.STARTED)])
        metrics.SAGAS_STARTED.labels(definition.name).inc()
        return record

    async def _drive(self, definition: SagaDefinition, record: SagaRecord) -> Outcome:
        """Take a saga on from where its log left it. By the pivot: its fact decides, and a
        saga whose pivot did not land is undone through the pivot."""
        journal = self._journal()
        match definition.resumption(record).direction:
            case Direction.NOTHING:
                return Outcome(record)
            case Direction.BACKWARD:
                return Outcome(await self._backward(definition, record, None, journal))
            case Direction.BY_THE_PIVOT:
                if not await self._pivot_landed(definition, record):
                    record = self._up_to_pivot(definition, record)
                    return Outcome(await self._backward(definition, record, None, journal))
                at = self._clock()
                record = record.moved(at, step=definition.pivot, done=definition.through_pivot)
                await journal.flush(record, SagaEvent(at, definition.pivot, Phase.RECOVERED))
        return await self._forward(definition, record, journal)

    def _up_to_pivot(self, definition: SagaDefinition, record: SagaRecord) -> SagaRecord:
        """A saga whose progress the log does not know, to be undone: through its pivot,
        every step before it may have taken effect (undoing one that did not is a no-op)."""
        return record.moved(self._clock(), step=definition.pivot, done=definition.before_pivot)

    # --- forward ----------------------------------------------------------------------

    async def _forward(
        self, definition: SagaDefinition, record: SagaRecord, journal: Journal
    ) -> Outcome:
        """Run the steps not done yet, in order, then complete the saga. A step that fails
        before the pivot undoes the saga; past it, a step whose effect is not in its store
        after its tries parks the saga, one whose effect landed counts as done."""
        for step in definition.steps_left(record):
            record = self._begin(record, step, journal)
            if (stopped := await self._checkpoint(definition, record, journal)) is not None:
                return stopped
            try:
                record = await self._attempt(record, step.name, step.action, journal)
            except LeaseLost as lost:
                return await self._lease_lost(definition, record, lost, trying=step.name)
            except Exception as error:
                if not definition.past_pivot(record):
                    return await self._fail(definition, record, error, journal, failed=step)
                if not await self._landed(step, record):
                    return await self._park(definition, record, step, error, journal)
                log.warning(
                    "saga %s: %s took effect, its answer was lost (%s)",
                    record.saga_id,
                    step.name,
                    describe(error),
                )
            record = self._succeeded(record, step, journal)
        return await self._complete(definition, record, journal)

    def _begin(self, record: SagaRecord, step: Step, journal: Journal) -> SagaRecord:
        if record.step == step.name:  # resumed at the step it was on
            return record
        at = self._clock()
        journal.note(SagaEvent(at, step.name, Phase.STARTED))
        return record.moved(at, step=step.name)

    def _succeeded(self, record: SagaRecord, step: Step, journal: Journal) -> SagaRecord:
        if self._after_step is not None:
            self._after_step(step.name)
        at = self._clock()
        journal.note(SagaEvent(at, step.name, Phase.SUCCEEDED))
        return record.moved(at, done=(*record.done, step.name), attempts=0)

    async def _checkpoint(
        self, definition: SagaDefinition, record: SagaRecord, journal: Journal
    ) -> Outcome | None:
        """The write after a pause, before the next side effect. None: go on."""
        try:
            await journal.checkpoint_if_due(record)
        except LeaseLost as lost:
            return await self._lease_lost(definition, record, lost)
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
        self, definition: SagaDefinition, record: SagaRecord, journal: Journal
    ) -> Outcome:
        at = self._clock()
        record = record.moved(at, status=SagaStatus.COMPLETED, error="")
        journal.note(SagaEvent(at, record.step, Phase.FINISHED))
        # Committed: the claim stands whoever finishes it. If the log is away the saga
        # stays in flight there, and a recoverer finds the facts and completes it.
        try:
            await journal.flush(record, best_effort=True)
        except LeaseLost as lost:
            return await self._lease_lost(definition, record, lost)
        metrics.saga_ended(record, self._clock())
        return Outcome(record)

    async def _park(
        self,
        definition: SagaDefinition,
        record: SagaRecord,
        step: Step,
        error: Exception,
        journal: Journal,
    ) -> Outcome:
        """Past the pivot and out of attempts: the claim stands, an operator finishes it."""
        at = self._clock()
        record = record.moved(at, status=SagaStatus.FAILED, step=step.name, error=describe(error))
        log.error("saga %s parked as failed at %s: %s", record.saga_id, step.name, describe(error))
        failed = SagaEvent(at, step.name, Phase.FAILED, describe(error))
        try:
            await journal.flush(record, failed, best_effort=True)
        except LeaseLost as lost:
            return await self._lease_lost(definition, record, lost)
        metrics.saga_ended(record, at)
        return Outcome(record)

    # --- a lost lease -----------------------------------------------------------------

    async def _lease_lost(
        self,
        definition: SagaDefinition,
        record: SagaRecord,
        lost: LeaseLost,
        *,
        trying: str | None = None,
    ) -> Outcome:
        """A write going forward was refused: another driver has the saga, and this one
        acts no more. `trying`: the step whose action was in flight.

        Before its pivot could have landed this driver just stops (LeaseLost). Once it
        could have, the new driver carries the saga forward from the facts, unless it
        looked before our pivot landed and went backward (`_undo_late_pivot`). Past the
        pivot the claim stands: the drive ends with the record as this driver left it.
        """
        past = definition.past_pivot(record)
        if past or trying == definition.pivot:
            await self._undo_late_pivot(definition, record)
        if past:
            return Outcome(record)
        raise lost

    async def _undo_late_pivot(self, definition: SagaDefinition, record: SagaRecord) -> None:
        """Our pivot may have landed after another driver took the saga over.

        If that driver went backward, our pivot's effect is an orphan: undo it and raise
        LeaseLost, so the client is not told it succeeded. Otherwise the new driver (or,
        if the record is gone, the hold settlement) carries the saga forward.
        """
        current = await self._log.load(record.saga_id)
        if current is None or not current.compensating:
            return
        step = definition.step(definition.pivot)
        log.warning(
            "saga %s: taken over and compensated; undoing our late %s", record.saga_id, step.name
        )
        if step.compensation is not None:
            try:
                async with self._one_try(f"undo {step.name}"):
                    await step.compensation(record.saga_id, record.payload)
            except Exception as error:  # the audit finds what is left
                log.error(
                    "saga %s: undo of late %s failed: %s",
                    record.saga_id,
                    step.name,
                    describe(error),
                )
        raise LeaseLost(f"saga {record.saga_id} was compensated by another driver")

    # --- backward ---------------------------------------------------------------------

    async def _fail(
        self,
        definition: SagaDefinition,
        record: SagaRecord,
        error: Exception,
        journal: Journal,
        *,
        failed: Step | None = None,
    ) -> Outcome:
        """A failure up to the pivot: undo what is done, and end with `error`.

        `error` reaches the client as itself: a business answer the stores gave (out of
        stock) stays that answer even if the saga's record is lost or taken over meanwhile
        (the new driver, or the settlement of abandoned holds, finishes the undo). An undo
        that cannot finish now is retried in the background at once, not after a lease.
        """
        try:
            record = await self._backward(definition, record, error, journal, failed=failed)
        except LeaseLost as lost:
            error.add_note(f"compensation left to recovery: {lost}")
            log.warning("saga %s: compensation left to recovery: %s", record.saga_id, lost)
            return Outcome(record, error)
        if record.status is SagaStatus.COMPENSATING:
            task = asyncio.ensure_future(self._keep_compensating(definition, record))
            self._compensating.add(task)
            task.add_done_callback(self._compensating.discard)
        return Outcome(record, error)

    async def _keep_compensating(self, definition: SagaDefinition, record: SagaRecord) -> None:
        """Retry an unfinished compensation, backing off (capped), until it is done, another
        driver takes the saga over, or this process stops (then recovery finishes it).

        Its client was answered already (503: nothing taken); this gives the unit back
        within a backoff of its store answering again. Each try renews the lease.
        """
        log.warning("saga %s: compensation continues in the background", record.saga_id)
        retry = 0
        while record.status is SagaStatus.COMPENSATING:
            retry += 1
            await self._sleep(self._policy.backoff.delay(retry))
            try:
                record = await self._backward(definition, record, None, self._journal())
            except LeaseLost:
                return  # another driver has it now
            except Exception as error:  # not a store outage: an operator must look
                log.error("saga %s: compensation stopped: %s", record.saga_id, describe(error))
                return
        log.info("saga %s: compensated in the background", record.saga_id)

    async def _backward(
        self,
        definition: SagaDefinition,
        record: SagaRecord,
        error: Exception | None,
        journal: Journal,
        *,
        failed: Step | None = None,
    ) -> SagaRecord:
        """Undo the saga in reverse. Returns the last record: compensated, or still compensating.

        The step that failed (or, on recovery, the step in progress) is undone too when it
        may have taken effect. If an undo fails, the earlier steps are left in place (undoing
        them could orphan the failed step's effect) and the saga stays compensating: its
        driver retries it in the background, a recoverer at its next takeover.
        """
        at = self._clock()
        reason = describe(error) if error is not None else record.error
        record = record.moved(at, status=SagaStatus.COMPENSATING, compensating=True, error=reason)
        if failed is not None:
            journal.note(SagaEvent(at, failed.name, Phase.FAILED, reason))
        in_doubt = failed.name if failed is not None else record.in_progress
        if error is not None and not may_have_applied(error):
            in_doubt = None  # the failed call never reached its store
        to_undo = definition.to_undo(record, in_doubt=in_doubt)
        if not to_undo:  # nothing took effect: its history is not worth keeping
            return await self._refused(record, error)
        for step in map(definition.step, to_undo):
            if step.compensation is None:
                continue
            try:
                record = await self._undo(record, step.name, step.compensation, journal)
            except LeaseLost:
                raise
            except Exception as undo_error:
                if error is not None:
                    error.add_note(f"compensation {step.name} failed: {describe(undo_error)}")
                return await self._undo_failed(record, step.name, undo_error, journal)
        return await self._compensated(record, journal)

    async def _undo(
        self, record: SagaRecord, name: str, compensation: Action, journal: Journal
    ) -> SagaRecord:
        at = self._clock()
        record = record.moved(at, step=name)
        journal.note(SagaEvent(at, name, Phase.COMPENSATING))
        # Compensation runs even when the log cannot be written: giving stock back
        # matters more than the record, and recovery replays compensations idempotently.
        await journal.flush(record, best_effort=True)
        record = await self._attempt(record, f"undo {name}", compensation, journal)
        at = self._clock()
        journal.note(SagaEvent(at, name, Phase.COMPENSATED))
        return record.moved(at, done=tuple(n for n in record.done if n != name), attempts=0)

    async def _undo_failed(
        self, record: SagaRecord, name: str, undo_error: Exception, journal: Journal
    ) -> SagaRecord:
        """Still compensating and in flight, for whoever retries the undo."""
        why = describe(undo_error)
        record = record.moved(self._clock(), error=f"{record.error}; undo {name} failed: {why}")
        failed = SagaEvent(record.updated_at, name, Phase.COMPENSATION_FAILED, why)
        await journal.flush(record, failed, best_effort=True)
        return record

    async def _compensated(self, record: SagaRecord, journal: Journal) -> SagaRecord:
        at = self._clock()
        record = record.moved(at, status=SagaStatus.COMPENSATED)
        journal.note(SagaEvent(at, record.step, Phase.FINISHED))
        await journal.flush(record, best_effort=True)
        metrics.saga_ended(record, at)
        return record

    async def _refused(self, record: SagaRecord, error: Exception | None) -> SagaRecord:
        """A saga that changed nothing (unknown coupon, duplicate, no stock, a store that
        could not be reached) ends with a small record kept briefly: a client sending
        refusals cannot fill the log."""
        refused = isinstance(error, DomainError)  # else a store failed before any effect
        status = SagaStatus.REFUSED if refused else SagaStatus.COMPENSATED
        record = record.moved(self._clock(), status=status)
        try:
            await self._log.refused(record)
        except StoreUnavailable as write_error:
            log.warning("saga %s: log write failed (%s)", record.saga_id, describe(write_error))
        if isinstance(error, DomainError):
            metrics.saga_refused(record, record.updated_at, error)
        else:
            metrics.saga_ended(record, record.updated_at)
        return record

    # --- one store call ---------------------------------------------------------------

    async def _attempt(
        self, record: SagaRecord, what: str, call: Action, journal: Journal
    ) -> SagaRecord:
        """One store call, retried while the store is away for up to `retry_seconds`, each
        try bounded by a timeout.

        A timed-out or dropped call may have taken effect; so may the whole series if any
        try may have, and the error that ends it says so.
        """
        maybe_applied = False
        give_up_at = self._monotonic() + self._policy.retry_seconds
        attempt = 0
        while True:
            attempt += 1
            record = record.moved(self._clock(), attempts=attempt)
            try:
                async with self._one_try(what):
                    await call(record.saga_id, record.payload)
                return record
            except StoreUnavailable as error:
                maybe_applied = error.maybe_applied = maybe_applied or error.maybe_applied
                pause = self._policy.backoff.delay(attempt)
                if self._monotonic() + pause >= give_up_at:
                    raise
                await self._retrying(record, what, attempt, error, journal)
                await self._sleep(pause)

    async def _retrying(
        self, record: SagaRecord, what: str, attempt: int, error: Exception, journal: Journal
    ) -> None:
        """Say a try failed and another follows: in the log (with the pending events), and
        one line per series at warning (an outage must not flood the logs)."""
        log.log(
            logging.WARNING if attempt == 1 else logging.DEBUG,
            "saga %s: %s attempt %d failed, retrying for up to %.1fs: %s",
            record.saga_id,
            what,
            attempt,
            self._policy.retry_seconds,
            describe(error),
        )
        retry = SagaEvent(self._clock(), what, Phase.RETRYING, describe(error))
        await journal.flush(record, retry, best_effort=True)
        metrics.STEP_RETRIES.labels(record.name, what).inc()

    @contextlib.asynccontextmanager
    async def _one_try(self, what: str) -> AsyncIterator[None]:
        """One store call, bounded by the step timeout. A call cut short by it is a store
        that did not answer, whatever the driver raised on being cancelled (PyMongo can
        raise a RuntimeError from its server selection)."""
        try:
            async with asyncio.timeout(self._policy.step_timeout_seconds) as limit:
                yield
        except StoreUnavailable:
            raise
        except Exception as error:
            if isinstance(error, TimeoutError) or limit.expired():
                raise StoreUnavailable(what) from error
            raise

    async def _pivot_landed(self, definition: SagaDefinition, record: SagaRecord) -> bool:
        """The fact that decides a recovered saga's direction; a store that cannot tell
        raises StoreUnavailable (the saga waits for the next recovery)."""
        async with self._one_try(f"check {definition.pivot}"):
            return await definition.pivot_landed(record.saga_id, record.payload)

    async def _landed(self, step: Step, record: SagaRecord) -> bool:
        """The fact check before giving up on a step: did its effect land after all (the
        answer that said so was lost)? One try; a store that cannot tell says no."""
        if step.landed is None:
            return False
        try:
            async with self._one_try(f"check {step.name}"):
                return await step.landed(record.saga_id, record.payload)
        except Exception as error:
            log.warning("saga %s: cannot check %s: %s", record.saga_id, step.name, describe(error))
            return False
