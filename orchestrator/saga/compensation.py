"""Undoing a saga: the step in doubt, then its completed steps in reverse; an undo that
cannot finish now is retried in the background until it does (a few at a time: past
BACKGROUND_UNDOS, recovery takes the rest up)."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

from orchestrator import metrics
from orchestrator.saga.journal import Journal
from orchestrator.saga.store_calls import StoreCalls
from sagas.definition import Action, SagaDefinition, Step
from sagas.errors import DomainError, LeaseLost, StoreUnavailable, describe, may_have_applied
from sagas.ports import SagaLog
from sagas.records import Phase, SagaEvent, SagaRecord, SagaStatus

log = logging.getLogger(__name__)

# Undos one process retries in the background at once. During a long outage each claim
# answered in doubt would otherwise add one, holding a task and its memory until the
# store is back; past the cap the saga waits for recovery, which takes it up by its lease.
BACKGROUND_UNDOS = 64
# How an undo's failure joins the saga's error: the cause, then the last undo failure.
_UNDO_FAILED = "; undo "


class Compensation:
    def __init__(
        self,
        saga_log: SagaLog,
        calls: StoreCalls,
        *,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        new_journal: Callable[[], Journal],
        lease_seconds: float,
    ) -> None:
        self._log = saga_log
        self._lease_seconds = lease_seconds
        self._calls = calls
        self._clock = clock
        self._new_journal = new_journal
        self._backoff = calls.policy.backoff
        self._sleep = sleep
        self._compensating: set[asyncio.Task[None]] = set()  # undos retried in the background

    async def close(self) -> None:
        """Stop the background compensations (on shutdown): their sagas stay compensating
        in the log, and recovery finishes them once their lease runs out."""
        for task in self._compensating:
            task.cancel()
        await asyncio.gather(*self._compensating, return_exceptions=True)

    def keep_on(self, definition: SagaDefinition[Any], record: SagaRecord) -> None:
        """Go on undoing an unfinished compensation in the background, at once; or, with
        BACKGROUND_UNDOS under way already, leave it to recovery."""
        if len(self._compensating) >= BACKGROUND_UNDOS:
            log.warning("saga %s: compensation left to recovery (too many undos)", record.saga_id)
            return
        task = asyncio.ensure_future(self._keep_compensating(definition, record))
        self._compensating.add(task)
        task.add_done_callback(self._compensating.discard)

    async def undo(
        self,
        definition: SagaDefinition[Any],
        record: SagaRecord,
        error: Exception | None,
        journal: Journal,
        *,
        failed: Step[Any] | None = None,
        retry_seconds: float | None = None,
    ) -> SagaRecord:
        """Undo the saga in reverse. Returns the last record: compensated, or still compensating.
        `retry_seconds`: how long each undo is retried (None: the policy's).

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
                record = await self._undo_step(
                    record, step.name, step.compensation, journal, retry_seconds
                )
            except LeaseLost:
                raise
            except Exception as undo_error:
                if error is not None:
                    error.add_note(f"compensation {step.name} failed: {describe(undo_error)}")
                return await self._undo_failed(record, step.name, undo_error, journal)
        return await self._compensated(record, journal)

    async def _undo_step(
        self,
        record: SagaRecord,
        name: str,
        compensation: Action[Any],
        journal: Journal,
        retry_seconds: float | None,
    ) -> SagaRecord:
        at = self._clock()
        record = record.moved(at, step=name)
        journal.note(SagaEvent(at, name, Phase.COMPENSATING))
        # Compensation runs even when the log cannot be written: giving stock back
        # matters more than the record, and recovery replays compensations idempotently.
        await journal.flush(record, best_effort=True)
        record = await self._calls.attempt(
            record, f"undo {name}", compensation, journal, retry_seconds=retry_seconds
        )
        at = self._clock()
        journal.note(SagaEvent(at, name, Phase.COMPENSATED))
        return record.moved(at, done=tuple(n for n in record.done if n != name), attempts=0)

    async def _undo_failed(
        self, record: SagaRecord, name: str, undo_error: Exception, journal: Journal
    ) -> SagaRecord:
        """Still compensating and in flight, for whoever retries the undo. The error says
        why the saga is undone and how its undo last failed: not every failure since.

        A store away is retried: at once in the background by a driver that answered a
        client, else by recovery after a backoff (a deferral, not a sign of a saga that
        kills its drivers). Any other failure waits for recovery's next lease."""
        why = describe(undo_error)
        cause = record.error.split(_UNDO_FAILED, 1)[0]
        record = record.moved(self._clock(), error=f"{cause}{_UNDO_FAILED}{name} failed: {why}")
        failed = SagaEvent(record.updated_at, name, Phase.COMPENSATION_FAILED, why)
        lease: float | None = None
        if isinstance(undo_error, StoreUnavailable):
            record = record.moved(record.updated_at, deferrals=record.deferrals + 1)
            lease = self._calls.policy.deferral_seconds(record.deferrals, self._lease_seconds)
        await journal.flush(record, failed, best_effort=True, lease_seconds=lease)
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

    async def _keep_compensating(self, definition: SagaDefinition[Any], record: SagaRecord) -> None:
        """Retry an unfinished compensation until it is done, another driver takes the
        saga over, or this process stops (then recovery finishes it): one series of
        retries, backing off (capped), its events thinned out as any series' are.

        Its client was answered already; this gives the unit back within a backoff of its
        store answering again. Each try renews the lease.
        """
        log.warning("saga %s: compensation continues in the background", record.saga_id)
        await self._sleep(self._backoff.delay(1))
        try:
            record = await self.undo(
                definition, record, None, self._new_journal(), retry_seconds=math.inf
            )
        except LeaseLost:
            return  # another driver has it now
        except Exception as error:  # not a store outage: an operator must look
            log.error("saga %s: compensation stopped: %s", record.saga_id, describe(error))
            return
        if record.status is SagaStatus.COMPENSATED:
            log.info("saga %s: compensated in the background", record.saga_id)
