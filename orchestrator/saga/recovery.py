"""Recovery: take over sagas whose driver died or stalled, and drive each to its end."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator import metrics
from orchestrator.logs import about_saga
from orchestrator.saga.engine import SagaEngine, describe
from orchestrator.store_watch import StoreStates
from sagas.audit import Auditor
from sagas.definition import SagaDefinition
from sagas.errors import LeaseLost, StoreUnavailable
from sagas.ports import SagaLog
from sagas.records import Phase, SagaEvent, SagaRecord, SagaStatus

log = logging.getLogger(__name__)

# Stuck sagas one round drives at once: one waiting on a slow store holds the others back
# no more, and a round takes few of the pooled connections the claims use.
SIDE_BY_SIDE = 8


@dataclass(frozen=True)
class Recovered:
    """What one recovery did: the saga's status after it, or skipped (status None):
    another process had the saga, or took it meanwhile."""

    saga_id: str
    status: SagaStatus | None
    error: str = ""

    @classmethod
    def skipped_saga(cls, saga_id: str) -> Recovered:
        return cls(saga_id, None)

    @classmethod
    def of(cls, record: SagaRecord) -> Recovered:
        return cls(record.saga_id, record.status, record.error)

    @property
    def skipped(self) -> bool:
        return self.status is None

    @property
    def ended_well(self) -> bool:
        return self.status in (SagaStatus.COMPLETED, SagaStatus.COMPENSATED)

    @property
    def shown_status(self) -> str:
        return "skipped" if self.status is None else self.status.value


class Recoverer:
    """Every gateway runs one in the background; `coupon-saga recover` runs one on demand.

    A saga is taken over only through the log's lease (a compare-and-set on its epoch), so
    two recoverers never drive the same saga, and its old driver's late writes are refused.
    """

    def __init__(
        self,
        saga_log: SagaLog,
        engine: SagaEngine,
        definitions: Mapping[str, SagaDefinition[Any]],
        *,
        owner: str,
        max_recoveries: int,
    ) -> None:
        self._log = saga_log
        self._engine = engine
        self.definitions = definitions
        self._owner = owner
        self._max_recoveries = max_recoveries

    async def recover_stuck(self, limit: int = 100) -> list[Recovered]:
        """Drive the stuck sagas, SIDE_BY_SIDE at a time. Once one recovery fails (a store
        is away), no other starts: the rest wait for the next round, and the failure is
        raised when those under way have ended."""
        slots = asyncio.Semaphore(SIDE_BY_SIDE)
        failed: list[Exception] = []

        async def one(saga_id: str) -> Recovered | None:
            async with slots:
                if failed:
                    return None
                try:
                    return await self.recover(saga_id)
                except Exception as error:
                    failed.append(error)
                    return None

        recovered = await asyncio.gather(*map(one, await self._log.stuck(limit)))
        if failed:
            raise failed[0]
        return [result for result in recovered if result is not None]

    async def recover(self, saga_id: str, *, parked: bool = False) -> Recovered:
        """Take the saga over and resume it. `parked`: also a failed one (an operator's call)."""
        with about_saga(saga_id):
            record = await self._log.acquire(saga_id, self._owner, parked=parked)
            if record is None:
                return Recovered.skipped_saga(saga_id)
            try:
                if not parked and record.recoveries - record.deferrals > self._max_recoveries:
                    record = await self._give_up(record)
                else:
                    record = await self._engine.resume(self.definitions[record.name], record)
            except LeaseLost:
                return Recovered.skipped_saga(saga_id)
            log.warning("saga %s recovered: %s", saga_id, record.status.value)
            metrics.SAGAS_RECOVERED.labels(record.name, record.status.value).inc()
            return Recovered.of(record)

    async def compensate(self, saga_id: str) -> Recovered:
        """An operator's undo. The engine refuses it for a saga past its pivot."""
        record = await self._log.acquire(saga_id, self._owner, parked=True)
        if record is None:
            return Recovered.skipped_saga(saga_id)
        record = await self._engine.compensate(self.definitions[record.name], record)
        return Recovered.of(record)

    async def _give_up(self, record: SagaRecord) -> SagaRecord:
        """Taken over more than `max_recoveries` times without a driver ever leaving it to
        recovery for a store away: its drivers die or stall on it. Parked, nothing tried."""
        at = record.updated_at
        error = (
            f"taken over {record.recoveries - record.deferrals - 1} times by recoveries "
            "that did not end; parked for an operator"
        )
        record = record.moved(at, status=SagaStatus.FAILED, error=f"{record.error}; {error}")
        await self._log.save(record, [SagaEvent(at, record.step, Phase.GAVE_UP, error)])
        metrics.saga_ended(record, at)
        return record


async def run_forever(
    recoverer: Recoverer, auditor: Auditor, stores: StoreStates, interval_seconds: float
) -> None:
    """Each round: take over stuck sagas, then settle units whose saga record is gone.

    A store that is away fails every round: that is said once, by `stores`.
    Ends when its task is cancelled, also if a driver call swallowed the CancelledError (a
    redis-py command cancelled mid-read sometimes does): the gateway's shutdown awaits this.
    """
    task = asyncio.current_task()
    while task is None or not task.cancelling():
        try:
            found = await recoverer.recover_stuck()  # each recovery says so itself
            metrics.SAGAS_STUCK.set(len(found))
            for finding in await auditor.settle_stale_holds():
                with about_saga(finding.saga_id):
                    log.warning(
                        "saga %s without a live record: %s; %s",
                        finding.saga_id,
                        finding.detail,
                        finding.repaired or "left for an operator",
                    )
        except Exception as error:
            if isinstance(error, StoreUnavailable) and stores.watches(error.store):
                stores.unavailable(error.store, describe(error))  # said once per outage
            else:
                log.warning("recovery round failed: %s", describe(error))
        await asyncio.sleep(interval_seconds)
    raise asyncio.CancelledError
