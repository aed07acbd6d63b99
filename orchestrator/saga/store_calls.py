"""A saga's calls to its stores: each try bounded by the step timeout, retried while the
store is away (a retry is written to the saga log), and the fact checks that ask a store
whether a step's effect is there."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from orchestrator import metrics
from orchestrator.saga.journal import Journal
from orchestrator.saga.retry_policy import RetryPolicy
from sagas.definition import Action, SagaDefinition, Step
from sagas.errors import StoreUnavailable, describe
from sagas.records import Phase, SagaEvent, SagaRecord

log = logging.getLogger(__name__)


class StoreCalls:
    def __init__(
        self,
        policy: RetryPolicy,
        *,
        clock: Callable[[], float],
        monotonic: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self.policy = policy
        self._clock = clock
        self._monotonic = monotonic
        self._sleep = sleep

    async def attempt(
        self,
        record: SagaRecord,
        what: str,
        call: Action[Any],
        journal: Journal,
        *,
        retry_seconds: float | None = None,
    ) -> SagaRecord:
        """One store call, retried while the store is away for up to `retry_seconds` (the
        policy's unless given; math.inf: until it answers), each try bounded by a timeout.

        A timed-out or dropped call may have taken effect; so may the whole series if any
        try may have, and the error that ends it says so.
        """
        maybe_applied = False
        patience = self.policy.retry_seconds if retry_seconds is None else retry_seconds
        give_up_at = self._monotonic() + patience
        retries = _RetryEvents(what, self._clock)
        attempt = 0
        while True:
            attempt += 1
            record = record.moved(self._clock(), attempts=attempt)
            try:
                async with self.one_try(what):
                    await call(record.saga_id, record.arguments)
            except StoreUnavailable as error:
                maybe_applied = error.maybe_applied = maybe_applied or error.maybe_applied
                pause = self.policy.backoff.delay(attempt)
                if self._monotonic() + pause >= give_up_at:
                    retries.close(journal)
                    raise
                await self._retrying(record, attempt, error, retries, journal)
                await self._sleep(pause)
            else:
                retries.close(journal)
                return record

    async def _retrying(
        self,
        record: SagaRecord,
        attempt: int,
        error: Exception,
        retries: _RetryEvents,
        journal: Journal,
    ) -> None:
        """Say a try failed and another follows: in the log (the record, which renews the
        lease, and now and then an event), and one line per series at warning (an outage
        must not flood the logs)."""
        log.log(
            logging.WARNING if attempt == 1 else logging.DEBUG,
            "saga %s: %s attempt %d failed, retrying for up to %.1fs: %s",
            record.saga_id,
            retries.what,
            attempt,
            self.policy.retry_seconds,
            describe(error),
        )
        event = retries.failed(attempt, describe(error))
        await journal.flush(record, *event, best_effort=True)
        metrics.STEP_RETRIES.labels(record.name, retries.what).inc()

    @contextlib.asynccontextmanager
    async def one_try(self, what: str) -> AsyncIterator[None]:
        """One store call, bounded by the step timeout. A call cut short by it is a store
        that did not answer, whatever the driver raised on being cancelled (PyMongo can
        raise a RuntimeError from its server selection, or its own "operation
        cancelled"): the saga's history says it timed out."""
        seconds = self.policy.step_timeout_seconds
        try:
            async with asyncio.timeout(seconds) as limit:
                yield
        except Exception as error:
            if isinstance(error, TimeoutError) or limit.expired():
                no_answer = TimeoutError(f"no answer within the step timeout, {seconds:g}s")
                raise StoreUnavailable(what) from no_answer
            raise

    async def pivot_landed(self, definition: SagaDefinition[Any], record: SagaRecord) -> bool:
        """The fact that decides a recovered saga's direction; a store that cannot tell
        raises StoreUnavailable (the saga waits for the next recovery)."""
        async with self.one_try(f"check {definition.pivot}"):
            return await definition.pivot_landed(record)

    async def landed(self, step: Step[Any], record: SagaRecord) -> bool:
        """The fact check before giving up on a step: did its effect land after all (the
        answer that said so was lost)? One try; a store that cannot tell says no."""
        if step.landed is None:
            return False
        try:
            async with self.one_try(f"check {step.name}"):
                return await step.landed(record.saga_id, record.arguments)
        except Exception as error:
            log.warning("saga %s: cannot check %s: %s", record.saga_id, step.name, describe(error))
            return False


class _RetryEvents:
    """The events one series of retries leaves: one at the 1st, 2nd, 4th, 8th... failed
    try, each counting the tries since the last, and one at the end for the rest; so a
    store away for an hour costs a saga a dozen events, and every try is still counted."""

    def __init__(self, what: str, clock: Callable[[], float]) -> None:
        self.what = what
        self._clock = clock
        self._unwritten = 0  # failed tries no event counts yet
        self._last_error = ""

    def failed(self, attempt: int, error: str) -> tuple[SagaEvent, ...]:
        """The event to write for this failed try, if it is one that gets one."""
        self._unwritten += 1
        self._last_error = error
        if attempt & (attempt - 1):  # not a power of two
            return ()
        return (self._event(),)

    def close(self, journal: Journal) -> None:
        """The series ended: the tries no event counted yet ride the next write."""
        if self._unwritten:
            journal.note(self._event())

    def _event(self) -> SagaEvent:
        tries, self._unwritten = self._unwritten, 0
        return SagaEvent(self._clock(), self.what, Phase.RETRYING, self._last_error, tries)
