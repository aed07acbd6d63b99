"""One drive's writes to the saga log: the events not yet written, and when it last wrote.

Events wait here until the next write carries them, in order, so the success path writes
the log only at its ends. A driver that has not written for half its lease (it was
paused) writes again before its next side effect: that write is fenced, and renews the
lease. Every write is fenced: LeaseLost always reaches the caller.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sagas.errors import StoreUnavailable, describe
from sagas.ports import SagaLog
from sagas.records import SagaEvent, SagaRecord

log = logging.getLogger(__name__)


class Journal:
    def __init__(
        self, saga_log: SagaLog, *, monotonic: Callable[[], float], checkpoint_after: float
    ) -> None:
        self._log = saga_log
        self._monotonic = monotonic
        self._checkpoint_after = checkpoint_after
        self._pending: list[SagaEvent] = []
        self._written_at = monotonic()

    async def create(self, record: SagaRecord, *events: SagaEvent) -> None:
        """Write a new saga's intent: its first lease starts with this write."""
        sent_at = self._monotonic()
        await self._log.create(record, events)
        self._written_at = sent_at

    def note(self, event: SagaEvent) -> None:
        """An event for the next write."""
        self._pending.append(event)

    def lease_held(self) -> bool:
        """Whether the lease is surely still ours: the last write renewed it less than half
        a lease ago, so no other driver can have taken the saga over since."""
        return self._monotonic() - self._written_at < self._checkpoint_after

    async def checkpoint_if_due(self, record: SagaRecord) -> None:
        """Write if the lease may have run out since the last write. A log that is away
        raises StoreUnavailable, and the events wait for the next write."""
        if not self.lease_held():
            await self.flush(record, best_effort=False)

    async def flush(
        self,
        record: SagaRecord,
        *events: SagaEvent,
        best_effort: bool = False,
        lease_seconds: float | None = None,
    ) -> None:
        """Write the record with the pending events and `events`.

        `best_effort`: a log that is away is shrugged off (the saga goes on; recovery reads
        the facts, not the history) and these events are given up. Otherwise
        StoreUnavailable propagates and the events wait for the next write.
        `lease_seconds`: the lease from now, if not the log's own (a saga left to recovery).
        """
        batch, self._pending = [*self._pending, *events], []
        # The lease runs from when the log wrote, which is before its answer reached us:
        # counted from the answer, a write answered late would seem to renew it for longer.
        sent_at = self._monotonic()
        try:
            await self._log.save(record, batch, lease_seconds=lease_seconds)
        except StoreUnavailable as error:
            if not best_effort:
                self._pending = batch
                raise
            log.warning(
                "saga %s: log write failed (%s); left for recovery", record.saga_id, describe(error)
            )
            return
        self._written_at = sent_at
