"""An in-memory saga log: a fake of our own SagaLog Protocol (not of a store's driver)."""

from __future__ import annotations

from collections.abc import Sequence

from sagas.errors import StoreUnavailable
from sagas.records import SagaEvent, SagaRecord, SagaStatus


class MemorySagaLog:
    def __init__(self) -> None:
        self.records: dict[str, SagaRecord] = {}
        self.events: dict[str, list[SagaEvent]] = {}
        self.writes = 0
        self.fail_from_write: int | None = None  # 1-based: this write and later ones fail

    async def save(self, record: SagaRecord, events: Sequence[SagaEvent]) -> None:
        self.writes += 1
        if self.fail_from_write is not None and self.writes >= self.fail_from_write:
            raise StoreUnavailable("redis")
        self.records[record.saga_id] = record
        self.events.setdefault(record.saga_id, []).extend(events)

    async def load(self, saga_id: str) -> SagaRecord | None:
        return self.records.get(saga_id)

    async def history(self, saga_id: str) -> list[SagaEvent]:
        return list(self.events.get(saga_id, []))

    async def find(self, status: SagaStatus | None, limit: int) -> list[SagaRecord]:
        found = [r for r in self.records.values() if status is None or r.status is status]
        return sorted(found, key=lambda r: r.updated_at, reverse=True)[:limit]

    def only(self) -> SagaRecord:
        (record,) = self.records.values()
        return record

    def phases(self) -> list[tuple[str, str]]:
        (events,) = self.events.values()
        return [(e.step, e.phase.value) for e in events]
