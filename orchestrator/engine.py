"""The saga engine: runs a saga definition step by step and keeps the saga log true.

The log is written before each side effect (the step is recorded as started) and after
it (succeeded, merged with the next step's start into one write). A failure up to the
pivot undoes the completed steps in reverse and re-raises the original error; after
the pivot the saga only moves forward, retrying, and is parked as failed for an
operator if it still cannot finish.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from sagas.definition import SagaDefinition, Step
from sagas.errors import StoreUnavailable, may_have_applied
from sagas.ports import SagaLog
from sagas.records import Phase, SagaEvent, SagaRecord, SagaStatus

log = logging.getLogger(__name__)


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
        store_attempts: int = 3,
        backoff_seconds: float = 0.05,
    ) -> None:
        """`store_attempts`: tries at a store call past the pivot, and at each compensation."""
        self._log = saga_log
        self._clock = clock
        self._store_attempts = store_attempts
        self._backoff = backoff_seconds

    async def run(self, definition: SagaDefinition, payload: Mapping[str, Any]) -> SagaRecord:
        """Run a new saga to its end and return its final record, or raise what ended it.

        If the first log write fails nothing has been touched, and StoreUnavailable
        propagates as it is.
        """
        now = self._clock()
        first = definition.steps[0]
        record = SagaRecord(
            saga_id=str(uuid.uuid4()),
            name=definition.name,
            payload=dict(payload),
            status=SagaStatus.RUNNING,
            step=first.name,
            created_at=now,
            updated_at=now,
        )
        await self._log.save(record, [SagaEvent(now, first.name, Phase.STARTED)])
        return await self._drive(definition, record)

    async def _drive(self, definition: SagaDefinition, record: SagaRecord) -> SagaRecord:
        steps = definition.steps
        for index, step in enumerate(steps):
            if step.name in record.done:
                continue
            committed = definition.pivot in record.done
            try:
                record = await self._act(step, record, retry=committed)
            except Exception as error:
                if committed:
                    return await self._park(record, step, error)
                # A business rejection, or a store never reached, means the step did nothing;
                # any other error leaves its outcome unknown, so its own compensation runs too.
                await self._compensate(
                    definition, record, step, error, undo_failed_step=may_have_applied(error)
                )
                raise
            at = self._clock()
            record = record.moved(at, done=(*record.done, step.name), attempts=0)
            events = [SagaEvent(at, step.name, Phase.SUCCEEDED)]
            if index + 1 < len(steps):
                record = record.moved(at, step=steps[index + 1].name)
                events.append(SagaEvent(at, record.step, Phase.STARTED))
            else:
                record = record.moved(at, status=SagaStatus.COMPLETED)
                events.append(SagaEvent(at, step.name, Phase.FINISHED))
            if definition.pivot in record.done:
                # Committed: the log may lag behind (recovery settles it), the saga goes on.
                await self._save_best_effort(record, events)
                continue
            try:
                await self._log.save(record, events)
            except StoreUnavailable as error:
                # Without the intent in the log the next step must not run: undo what is done.
                await self._compensate(definition, record, None, error, undo_failed_step=False)
                raise
        return record

    async def _act(self, step: Step, record: SagaRecord, *, retry: bool) -> SagaRecord:
        """Run a step's action. Before the pivot one attempt: failing fast frees the stock."""
        attempts = self._store_attempts if retry else 1
        for attempt in range(1, attempts + 1):
            record = record.moved(self._clock(), attempts=attempt)
            try:
                await step.action(record.saga_id, record.payload)
                return record
            except StoreUnavailable as error:
                if attempt == attempts:
                    raise
                await self._back_off(record, step.name, attempt, error)
        raise AssertionError("unreachable")

    async def _undo(self, step: Step, record: SagaRecord) -> None:
        """Run a compensation, retrying a store that is briefly away: it must not be skipped."""
        assert step.compensation is not None
        for attempt in range(1, self._store_attempts + 1):
            try:
                await step.compensation(record.saga_id, record.payload)
                return
            except StoreUnavailable as error:
                if attempt == self._store_attempts:
                    raise
                await self._back_off(record, f"undo {step.name}", attempt, error)

    async def _back_off(
        self, record: SagaRecord, what: str, attempt: int, error: StoreUnavailable
    ) -> None:
        log.warning(
            "saga %s: %s attempt %d failed: %s", record.saga_id, what, attempt, describe(error)
        )
        await asyncio.sleep(self._backoff * 2 ** (attempt - 1))

    async def _compensate(
        self,
        definition: SagaDefinition,
        record: SagaRecord,
        failed: Step | None,
        error: Exception,
        *,
        undo_failed_step: bool,
    ) -> None:
        at = self._clock()
        record = record.moved(at, status=SagaStatus.COMPENSATING, error=describe(error))
        events = []
        if failed is not None:
            events.append(SagaEvent(at, failed.name, Phase.FAILED, describe(error)))
        to_undo = [failed] if failed is not None and undo_failed_step else []
        to_undo += [definition.step(name) for name in reversed(record.done)]
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
                await self._undo(step, record)
            except Exception as undo_error:
                error.add_note(f"compensation {step.name} failed: {describe(undo_error)}")
                parked = record.moved(
                    self._clock(),
                    status=SagaStatus.FAILED,
                    error=f"{describe(error)}; undo {step.name} failed: {describe(undo_error)}",
                )
                await self._save_best_effort(
                    parked,
                    [
                        SagaEvent(
                            parked.updated_at,
                            step.name,
                            Phase.COMPENSATION_FAILED,
                            describe(undo_error),
                        )
                    ],
                )
                return
            at = self._clock()
            record = record.moved(at, done=tuple(n for n in record.done if n != step.name))
            events.append(SagaEvent(at, step.name, Phase.COMPENSATED))
        at = self._clock()
        record = record.moved(at, status=SagaStatus.COMPENSATED)
        events.append(SagaEvent(at, record.step, Phase.FINISHED))
        await self._save_best_effort(record, events)

    async def _park(self, record: SagaRecord, step: Step, error: Exception) -> SagaRecord:
        """Past the pivot and out of attempts: the claim stands, an operator finishes it."""
        at = self._clock()
        record = record.moved(at, status=SagaStatus.FAILED, step=step.name, error=describe(error))
        log.error("saga %s parked as failed at %s: %s", record.saga_id, step.name, describe(error))
        await self._save_best_effort(
            record, [SagaEvent(at, step.name, Phase.FAILED, describe(error))]
        )
        return record

    async def _save_best_effort(self, record: SagaRecord, events: list[SagaEvent]) -> None:
        try:
            await self._log.save(record, events)
        except StoreUnavailable as error:
            log.warning(
                "saga %s: log write failed (%s); left for recovery", record.saga_id, describe(error)
            )
