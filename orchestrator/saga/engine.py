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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

from orchestrator import metrics
from orchestrator.logs import SAGA_ID
from orchestrator.saga.retry_policy import DEFAULT_POLICY, RetryPolicy
from sagas.definition import SagaDefinition, Step
from sagas.errors import (
    DomainError,
    LeaseLost,
    SagaConflict,
    StoreUnavailable,
    may_have_applied,
)
from sagas.ports import SagaLog
from sagas.records import Phase, SagaEvent, SagaRecord, SagaStatus

log = logging.getLogger(__name__)

AfterStep = Callable[[str], None]

# Between tries at a store that is away: 50 ms doubling up to 1 s (README's bound on
# giving a unit back after a 503 rests on this cap).


def new_saga_id() -> str:
    return str(uuid.uuid4())


def describe(error: BaseException) -> str:
    """One line for operators: the error and, for store failures, the driver's reason."""
    text = f"{type(error).__name__}: {error}"
    if isinstance(error, StoreUnavailable) and error.__cause__ is not None:
        text += f" ({type(error.__cause__).__name__}: {error.__cause__})"
    return text


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

    async def run(
        self, definition: SagaDefinition, payload: Mapping[str, Any], saga_id: str | None = None
    ) -> SagaRecord:
        """Run a new saga to its end and return its final record, or raise what ended it.

        `saga_id`: a fresh id the caller made (to name the saga in its answer), or None.
        If the first log write fails nothing has been touched, and StoreUnavailable
        propagates as it is.
        """
        now = self._clock()
        first = definition.steps[0]
        saga_id = saga_id or new_saga_id()
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
        return await self._forward(definition, record, raise_failure=True)

    async def resume(self, definition: SagaDefinition, record: SagaRecord) -> SagaRecord:
        """Drive a saga taken over from a dead or stalled driver to its end.

        Past the pivot it goes forward; compensating, back. Otherwise the log does not say
        how far the driver got, and the fact does: if the pivot landed, forward; if not,
        back through the pivot and every step before it.
        """
        SAGA_ID.set(record.saga_id)
        if record.compensating:
            return await self._backward(definition, record, None)
        if definition.pivot not in record.done:
            if not await self._pivot_landed(definition, record):
                return await self._backward(definition, self._up_to_pivot(definition, record), None)
            at = self._clock()
            record = record.moved(at, step=definition.pivot, done=definition.through_pivot)
            await self._log.save(record, [SagaEvent(at, definition.pivot, Phase.RECOVERED)])
        return await self._forward(definition, record, raise_failure=False)

    async def compensate(self, definition: SagaDefinition, record: SagaRecord) -> SagaRecord:
        """Undo a saga on an operator's word; refused once its pivot has taken effect."""
        SAGA_ID.set(record.saga_id)
        if not record.compensating:
            if definition.pivot in record.done or await self._pivot_landed(definition, record):
                raise SagaConflict(
                    f"saga {record.saga_id} is past its pivot; it can only go forward"
                )
            record = self._up_to_pivot(definition, record)
        return await self._backward(definition, record, None)

    def _up_to_pivot(self, definition: SagaDefinition, record: SagaRecord) -> SagaRecord:
        """A saga whose progress the log does not know, to be undone: through its pivot,
        every step before it may have taken effect (undoing one that did not is a no-op)."""
        return record.moved(self._clock(), step=definition.pivot, done=definition.before_pivot)

    async def _forward(
        self, definition: SagaDefinition, record: SagaRecord, *, raise_failure: bool
    ) -> SagaRecord:
        # Events not yet written: they go out with the next write, in order.
        pending: list[SagaEvent] = []
        written_at = self._monotonic()
        for step in definition.steps:
            if step.name in record.done:
                continue
            committed = definition.pivot in record.done
            if record.step != step.name:
                at = self._clock()
                record = record.moved(at, step=step.name)
                pending.append(SagaEvent(at, step.name, Phase.STARTED))
            if self._monotonic() - written_at >= self._checkpoint_after:
                # Paused long enough that the lease may have run out: a fenced write
                # (which renews the lease) before the next side effect.
                try:
                    await self._log.save(record, pending)
                    pending, written_at = [], self._monotonic()
                except LeaseLost:
                    if committed:
                        return await self._fenced_out_past_pivot(definition, record)
                    raise
                except StoreUnavailable as error:
                    if not committed:
                        # Without a live lease the next step must not run: undo what is done.
                        last = record.done[-1] if record.done else step.name
                        record = await self._undo_before_pivot(
                            definition,
                            record.moved(record.updated_at, step=last),
                            error,
                            pending=pending,
                        )
                        if raise_failure:
                            raise
                        return record
                    # Committed: the claim stands; the events wait for the next write.
                    log.warning("saga %s: log write failed (%s)", record.saga_id, error)
            try:
                record = await self._attempt(record, step.name, step.action, pending)
            except LeaseLost:
                if committed:
                    return await self._fenced_out_past_pivot(definition, record)
                if step.name == definition.pivot:
                    await self._yield_pivot(definition, record)
                raise
            except Exception as error:
                if not committed:
                    record = await self._undo_before_pivot(
                        definition, record, error, failed=step, pending=pending
                    )
                    if raise_failure:
                        raise
                    return record
                if not await self._landed(step, record):
                    return await self._park(definition, record, step, error, pending)
                log.warning(
                    "saga %s: %s took effect, its answer was lost (%s)",
                    record.saga_id,
                    step.name,
                    describe(error),
                )
            if self._after_step is not None:
                self._after_step(step.name)
            at = self._clock()
            record = record.moved(at, done=(*record.done, step.name), attempts=0)
            pending.append(SagaEvent(at, step.name, Phase.SUCCEEDED))
        at = self._clock()
        record = record.moved(at, status=SagaStatus.COMPLETED, error="")
        pending.append(SagaEvent(at, record.step, Phase.FINISHED))
        # Committed: the claim stands whoever finishes it. If the log is away the saga
        # stays in flight there, and a recoverer finds the facts and completes it.
        try:
            await self._save_best_effort(record, pending)
        except LeaseLost:
            return await self._fenced_out_past_pivot(definition, record)
        metrics.saga_ended(record, self._clock())
        return record

    async def _attempt(
        self,
        record: SagaRecord,
        what: str,
        call: Callable[[str, Mapping[str, Any]], Awaitable[None]],
        pending: list[SagaEvent] | None = None,
    ) -> SagaRecord:
        """One store call, retried while the store is away for up to `retry_seconds`, each
        try bounded by a timeout.

        A timed-out or dropped call may have taken effect; so may the whole series if any
        try may have, and the error that ends it says so. A retry is logged together with
        the `pending` events, which it empties.
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
                maybe_applied = maybe_applied or error.maybe_applied
                error.maybe_applied = maybe_applied
                pause = self._policy.backoff.delay(attempt)
                if self._monotonic() + pause >= give_up_at:
                    raise
                # One line per series at warning: an outage must not flood the logs.
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
                events = [*(pending or ()), retry]
                if pending:
                    pending.clear()
                await self._save_best_effort(record, events)
                metrics.STEP_RETRIES.labels(record.name, what).inc()
                await self._sleep(pause)

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

    async def _undo_before_pivot(
        self,
        definition: SagaDefinition,
        record: SagaRecord,
        error: Exception,
        *,
        failed: Step | None = None,
        pending: Sequence[SagaEvent] = (),
    ) -> SagaRecord:
        """A failure up to the pivot: undo what is done; the caller then re-raises `error`.

        `error` reaches the client as itself: a business answer the stores gave (out of
        stock) stays that answer even if the saga's record is lost or taken over meanwhile
        (the new driver, or the settlement of abandoned holds, finishes the undo). An undo
        that cannot finish now is retried in the background at once, not after a lease.
        """
        try:
            record = await self._backward(definition, record, error, failed=failed, pending=pending)
        except LeaseLost as lost:
            error.add_note(f"compensation left to recovery: {lost}")
            log.warning("saga %s: compensation left to recovery: %s", record.saga_id, lost)
            return record
        if record.status is SagaStatus.COMPENSATING:
            task = asyncio.ensure_future(self._keep_compensating(definition, record))
            self._compensating.add(task)
            task.add_done_callback(self._compensating.discard)
        return record

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
                record = await self._backward(definition, record, None)
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
        *,
        failed: Step | None = None,
        pending: Sequence[SagaEvent] = (),
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
        events = [*pending]
        current = failed
        if failed is not None:
            assert error is not None
            events.append(SagaEvent(at, failed.name, Phase.FAILED, describe(error)))
        elif record.step not in record.done:
            current = definition.step(record.step)
        undo_current = current is not None and (error is None or may_have_applied(error))
        to_undo = [current] if current is not None and undo_current else []
        to_undo += [definition.step(name) for name in reversed(record.done)]
        if not to_undo:  # nothing took effect: its history is not worth keeping
            return await self._refused(record, error)
        for step in to_undo:
            if step.compensation is None:
                continue
            at = self._clock()
            record = record.moved(at, step=step.name)
            events.append(SagaEvent(at, step.name, Phase.COMPENSATING))
            # Compensation runs even when the log cannot be written: giving stock back
            # matters more than the record, and recovery replays compensations idempotently.
            await self._save_best_effort(record, events)
            events = []
            try:
                record = await self._attempt(record, f"undo {step.name}", step.compensation)
            except LeaseLost:
                raise
            except Exception as undo_error:
                if error is not None:
                    error.add_note(f"compensation {step.name} failed: {describe(undo_error)}")
                # Still compensating and in flight, for whoever retries the undo.
                record = record.moved(
                    self._clock(),
                    error=f"{reason}; undo {step.name} failed: {describe(undo_error)}",
                )
                await self._save_best_effort(
                    record,
                    [
                        SagaEvent(
                            record.updated_at,
                            step.name,
                            Phase.COMPENSATION_FAILED,
                            describe(undo_error),
                        )
                    ],
                )
                return record
            at = self._clock()
            record = record.moved(
                at, done=tuple(n for n in record.done if n != step.name), attempts=0
            )
            events.append(SagaEvent(at, step.name, Phase.COMPENSATED))
        at = self._clock()
        record = record.moved(at, status=SagaStatus.COMPENSATED)
        events.append(SagaEvent(at, record.step, Phase.FINISHED))
        await self._save_best_effort(record, events)
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

    async def _yield_pivot(self, definition: SagaDefinition, record: SagaRecord) -> None:
        """Our pivot may have landed, but another driver took the saga over meanwhile.

        If that driver went backward (it looked before our pivot landed), our pivot's effect
        is an orphan: undo it and raise LeaseLost, so the client is not told it succeeded.
        Otherwise the new driver (or, if the record is gone, the hold settlement) carries
        the saga forward from the facts.
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

    async def _fenced_out_past_pivot(
        self, definition: SagaDefinition, record: SagaRecord
    ) -> SagaRecord:
        """Refused a write after our pivot landed: the new driver finishes the saga, unless
        it went backward, and then our claim is undone and LeaseLost raised."""
        await self._yield_pivot(definition, record)
        return record

    async def _park(
        self,
        definition: SagaDefinition,
        record: SagaRecord,
        step: Step,
        error: Exception,
        pending: Sequence[SagaEvent],
    ) -> SagaRecord:
        """Past the pivot and out of attempts: the claim stands, an operator finishes it."""
        at = self._clock()
        record = record.moved(at, status=SagaStatus.FAILED, step=step.name, error=describe(error))
        log.error("saga %s parked as failed at %s: %s", record.saga_id, step.name, describe(error))
        try:
            await self._save_best_effort(
                record, [*pending, SagaEvent(at, step.name, Phase.FAILED, describe(error))]
            )
        except LeaseLost:
            return await self._fenced_out_past_pivot(definition, record)
        metrics.saga_ended(record, at)
        return record

    async def _save_best_effort(self, record: SagaRecord, events: list[SagaEvent]) -> None:
        """Save, shrugging off an unavailable log; a lost lease still stops the caller."""
        try:
            await self._log.save(record, events)
        except StoreUnavailable as error:
            log.warning(
                "saga %s: log write failed (%s); left for recovery", record.saga_id, describe(error)
            )
