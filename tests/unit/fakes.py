"""Fakes of our own Protocols (not of a store's driver): an in-memory saga log, scripted steps."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from sagas.definition import SagaDefinition, Step
from sagas.errors import LeaseLost, SagaConflict, StoreUnavailable
from sagas.ports import Where
from sagas.records import Lease, SagaEvent, SagaRecord, SagaStatus


class MemorySagaLog:
    def __init__(self) -> None:
        self.records: dict[str, SagaRecord] = {}
        self.events: dict[str, list[SagaEvent]] = {}
        self.writes = 0
        self.fail_from_write: int | None = None  # 1-based: this write and later ones fail
        self.lapsed: set[str] = set()  # sagas whose lease a test declares run out
        self.refused_ids: set[str] = set()  # sagas ended as refused: no history kept
        self.lease_seconds: dict[str, float | None] = {}  # each saga's last lease asked for

    async def create(self, record: SagaRecord, events: Sequence[SagaEvent]) -> None:
        self._reach()
        if record.saga_id in self.records:
            raise LeaseLost(record.saga_id)
        await self._write(record, events)

    async def save(
        self,
        record: SagaRecord,
        events: Sequence[SagaEvent],
        *,
        lease_seconds: float | None = None,
    ) -> None:
        self._reach()
        stored = self.records.get(record.saga_id)
        if stored is None or stored.epoch != record.epoch:
            raise LeaseLost(record.saga_id)
        await self._write(record, events)
        self.lease_seconds[record.saga_id] = lease_seconds

    async def refused(self, record: SagaRecord) -> None:
        await self.save(record, [])
        self.events.pop(record.saga_id, None)
        self.refused_ids.add(record.saga_id)

    def _reach(self) -> None:
        """Each write reaches the log, or finds it away, before its fence is checked."""
        self.writes += 1
        if self.fail_from_write is not None and self.writes >= self.fail_from_write:
            raise StoreUnavailable("redis")

    async def _write(self, record: SagaRecord, events: Sequence[SagaEvent]) -> None:
        # Kept as a real log keeps it: the stored payload, not the driver's decoded one.
        self.records[record.saga_id] = replace(record, arguments=None)
        self.events.setdefault(record.saga_id, []).extend(events)
        self.lapsed.discard(record.saga_id)

    async def acquire(self, saga_id: str, owner: str, *, parked: bool) -> SagaRecord | None:
        record = self.records.get(saga_id)
        if record is None:
            return None
        stuck = record.status.in_flight and saga_id in self.lapsed
        if not (stuck or (parked and record.status is SagaStatus.FAILED)):
            return None
        record = replace(record, epoch=record.epoch + 1, recoveries=record.recoveries + 1)
        self.records[saga_id] = record
        self.lapsed.discard(saga_id)
        return record

    async def lease(self, saga_id: str) -> Lease | None:
        record = self.records.get(saga_id)
        if record is None or not record.status.in_flight:
            return None
        return Lease("", record.updated_at, live=saga_id not in self.lapsed)

    async def stuck(self, limit: int | None) -> list[str]:
        return [s for s in self.lapsed if self.records[s].status.in_flight][:limit]

    async def load(self, saga_id: str) -> SagaRecord | None:
        return self.records.get(saga_id)

    async def history(self, saga_id: str) -> list[SagaEvent]:
        return list(self.events.get(saga_id, []))

    async def statuses(self, saga_ids: Sequence[str]) -> dict[str, SagaStatus]:
        return {s: self.records[s].status for s in saga_ids if s in self.records}

    async def find(
        self, status: SagaStatus | None, limit: int | None, *, where: Where | None = None
    ) -> list[SagaRecord]:
        found = [
            r
            for r in self.records.values()
            if (status is None or r.status is status) and (where is None or where(r))
        ]
        return sorted(found, key=lambda r: r.updated_at, reverse=True)[:limit]

    def only(self) -> SagaRecord:
        (record,) = self.records.values()
        return record

    def phases(self) -> list[tuple[str, str]]:
        (events,) = self.events.values()
        return [(e.step, e.phase.value) for e in events]


class FakeClock:
    """A monotonic clock a test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        """The engine's pause between tries: time passes, nobody waits."""
        self.now += seconds
        await asyncio.sleep(0)


class Script:
    """Steps a, b (pivot), c; each records its calls and raises what a test tells it to."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.failures: dict[str, list[Exception]] = {}
        # Calls whose store is away (after any scripted failures), and how it fails them.
        self.away: dict[str, bool] = {}  # call -> whether a failed try may have applied
        self.answers_lost: set[str] = set()  # calls that take effect, then fail anyway
        self.b_landed = False
        self.b_erased = False  # undone: a tombstone refuses a late "do b" (as MongoClaims)
        self.c_landed = False
        # Run inside a call, once: what another process does while this call is in flight.
        self.meanwhile: dict[str, Callable[[str], Awaitable[None]]] = {}

    async def pivot_landed(self, saga_id: str, payload: Mapping[str, Any]) -> bool:
        self.calls.append("probe b")
        return self.b_landed

    async def c_took_effect(self, saga_id: str, payload: Mapping[str, Any]) -> bool:
        self.calls.append("probe c")
        return self.c_landed

    def fail(self, call: str, *errors: Exception) -> None:
        self.failures[call] = list(errors)

    def down(self, call: str, *, maybe_applied: bool = True) -> None:
        """Every try of `call` fails as with its store away, until `up`."""
        self.away[call] = maybe_applied

    def up(self, call: str) -> None:
        self.away.pop(call, None)

    def tried(self) -> list[str]:
        """The calls, each run of retries of one call counted once."""
        return [c for i, c in enumerate(self.calls) if i == 0 or self.calls[i - 1] != c]

    def action(self, call: str):
        async def run(saga_id: str, payload: Mapping[str, Any]) -> None:
            self.calls.append(call)
            if call in self.meanwhile:
                await self.meanwhile.pop(call)(saga_id)
            if self.failures.get(call):
                raise self.failures[call].pop(0)
            if call in self.away:
                raise StoreUnavailable("store", maybe_applied=self.away[call])
            if call == "do b" and self.b_erased:
                raise SagaConflict("b was undone already")
            if call == "do b":
                self.b_landed = True
            if call == "undo b":
                self.b_erased, self.b_landed = True, False
            if call == "do c":
                self.c_landed = True
            if call in self.answers_lost:
                raise StoreUnavailable("store")

        return run

    def definition(self) -> SagaDefinition[dict[str, Any]]:
        return SagaDefinition(
            "test",
            (
                Step("a", self.action("do a"), self.action("undo a")),
                Step("b", self.action("do b"), self.action("undo b"), landed=self.pivot_landed),
                Step("c", self.action("do c"), landed=self.c_took_effect),
            ),
            pivot="b",
            encode=dict,
            decode=dict,
        )
