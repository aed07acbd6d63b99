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
        self, record: SagaRecord, what: str, call: Action[Any], journal: Journal
    ) -> SagaRecord:
        """One store call, retried while the store is away for up to `retry_seconds`, each
        try bounded by a timeout.

        A timed-out or dropped call may have taken effect; so may the whole series if any
        try may have, and the error that ends it says so.
        """
        maybe_applied = False
        give_up_at = self._monotonic() + self.policy.retry_seconds
        attempt = 0
        while True:
            attempt += 1
            record = record.moved(self._clock(), attempts=attempt)
            try:
                async with self.one_try(what):
                    await call(record.saga_id, record.arguments)
                return record
            except StoreUnavailable as error:
                maybe_applied = error.maybe_applied = maybe_applied or error.maybe_applied
                pause = self.policy.backoff.delay(attempt)
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
            self.policy.retry_seconds,
            describe(error),
        )
        retry = SagaEvent(self._clock(), what, Phase.RETRYING, describe(error))
        await journal.flush(record, retry, best_effort=True)
        metrics.STEP_RETRIES.labels(record.name, what).inc()

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
