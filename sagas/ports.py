"""The stores as the sagas see them, and the driver as the replay tool sees it.
`services/` implements each store's Protocol; `orchestrator/` the driver's."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sagas.definition import SagaDefinition
from sagas.records import Lease, SagaEvent, SagaRecord, SagaStatus


@dataclass(frozen=True)
class CouponStock:
    name: str
    amount: int
    remaining_amount: int


class HoldStatus(enum.StrEnum):
    """A hold's life: held, then confirmed (the claim stands) or released (given back)."""

    HELD = "held"
    CONFIRMED = "confirmed"
    RELEASED = "released"


@dataclass(frozen=True)
class Hold:
    """A saga's hold on one unit: held, then confirmed or released."""

    saga_id: str
    coupon_name: str
    user_id: str
    status: HoldStatus
    created_at: datetime
    age_seconds: float  # since its last change, by the inventory's own clock


@dataclass(frozen=True)
class CouponTally:
    """A coupon's stock and its live units: held by sagas in flight, or confirmed."""

    stock: CouponStock
    held: int
    confirmed: int


@dataclass(frozen=True)
class StockSnapshot:
    """A coupon's stock and its holds, read at one instant."""

    stock: CouponStock
    holds: list[Hold]


@dataclass(frozen=True)
class Lineage:
    """Which history a PostgreSQL server writes: a promotion starts a new timeline, a
    cluster made anew has another system identifier."""

    system_identifier: int
    timeline: int


@dataclass(frozen=True)
class LostHold:
    """A saga's hold to restore after a failover, with the unit it took."""

    saga_id: str
    coupon_name: str
    user_id: str


@dataclass(frozen=True)
class Claimed:
    """A claim that stands: who holds which coupon since when, and by which saga."""

    saga_id: str
    user_id: str
    coupon_name: str
    claimed_at: datetime


class Inventory(Protocol):
    async def create_coupon(self, name: str, amount: int) -> CouponStock: ...

    async def get_coupon(self, name: str) -> CouponStock | None: ...

    async def reserve(self, saga_id: str, coupon_name: str, user_id: str) -> None: ...

    async def release(self, saga_id: str, coupon_name: str, user_id: str) -> bool: ...

    async def confirm(self, saga_id: str) -> None: ...

    async def hold_status(self, coupon_name: str, user_id: str) -> HoldStatus | None:
        """The status of the user's live (held or confirmed) unit of the coupon, if any."""

    async def holders_if_sold_out(
        self, coupon_name: str, limit: int
    ) -> dict[str, HoldStatus] | None:
        """None if the coupon has stock left (or does not exist); else, read at the same
        instant, the users with a live unit of it and its status, up to `limit` + 1."""

    async def coupon_names(self) -> list[str]: ...

    async def tallies(self, limit: int, name: str | None = None) -> list[CouponTally]:
        """The newest `limit` coupons (or the one named), newest first, each with its
        units held and confirmed."""

    async def lineage(self) -> Lineage:
        """The history the server writes now."""

    async def reconciled_lineage(self) -> Lineage | None:
        """The history the stock was last reconciled on (None: never)."""

    async def mark_reconciled(self, lineage: Lineage) -> None: ...

    def reconciling(self) -> AbstractAsyncContextManager[None]:
        """Held while reconciling: one reconciliation at a time, over every gateway."""

    async def restore_holds(self, holds: Sequence[LostHold], status: HoldStatus) -> list[str]:
        """Restore holds a failover lost, each with its unit (or confirm one still held,
        if `status` is confirmed); each one's outcome: restored, confirmed, present,
        conflict, no_stock or coupon_not_found."""

    async def snapshot(self, coupon_name: str) -> StockSnapshot | None: ...

    async def hold(self, saga_id: str) -> Hold | None: ...

    async def stale_holds(self, older_than_seconds: float, limit: int) -> list[str]:
        """Saga ids of holds still held and unchanged for that long, oldest first."""

    async def recount(self, coupon_name: str) -> tuple[int, int]:
        """Set remaining_amount to amount minus the live holds; returns (before, after)."""


class ClaimLedger(Protocol):
    async def record(
        self, saga_id: str, user_id: str, coupon_name: str, claimed_at: datetime
    ) -> datetime: ...

    async def erase(self, saga_id: str) -> bool: ...

    async def exists(self, saga_id: str) -> bool: ...

    async def claimants(self, coupon_name: str) -> dict[str, str]:
        """Saga id -> user id of each claim of the coupon, oldest claim first."""

    async def claims(self, coupon_name: str) -> list[Claimed]: ...

    async def claim_of(self, saga_id: str) -> Claimed | None:
        """The claim document this saga wrote, if it stands (not erased)."""

    async def count(self, coupon_name: str) -> int:
        """The claim documents of the coupon."""


Where = Callable[[SagaRecord], bool]  # which sagas a listing keeps


class SagaLog(Protocol):
    async def create(self, record: SagaRecord, events: Sequence[SagaEvent]) -> None: ...

    async def save(
        self,
        record: SagaRecord,
        events: Sequence[SagaEvent],
        *,
        lease_seconds: float | None = None,
    ) -> None:
        """Raises LeaseLost if the stored epoch is not the record's (or the record is gone).
        A saga in flight keeps its lease for `lease_seconds` from now (None: the log's own
        lease); a shorter one hands it to recovery sooner."""

    async def refused(self, record: SagaRecord) -> None:
        """End a saga that changed no store: only its record is kept, for a short retention,
        so refusals cost little. Fenced like `save`."""

    async def acquire(self, saga_id: str, owner: str, *, parked: bool) -> SagaRecord | None:
        """Take over a saga whose lease ran out (and, if `parked`, a failed one)."""

    async def lease(self, saga_id: str) -> Lease | None:
        """The lease of an in-flight saga; None once it is finished, parked or gone."""

    async def stuck(self, limit: int | None) -> list[str]:
        """In-flight sagas whose lease has run out, oldest first; `limit` None: all."""

    async def load(self, saga_id: str) -> SagaRecord | None: ...

    async def history(self, saga_id: str) -> list[SagaEvent]: ...

    async def statuses(self, saga_ids: Sequence[str]) -> dict[str, SagaStatus]:
        """The status of each saga that has a record; sagas without one are left out."""

    async def find(
        self, status: SagaStatus | None, limit: int | None, *, where: Where | None = None
    ) -> list[SagaRecord]:
        """The newest `limit` sagas (None: all) with that status (None: any) for which
        `where` holds, newest first; reading about as many as it returns."""


class DriveOutcome(Protocol):
    """What driving one saga came to."""

    @property
    def skipped(self) -> bool:
        """Nothing was done: another process had the saga, or took it meanwhile."""

    @property
    def ended_well(self) -> bool:
        """Completed or compensated."""

    @property
    def shown_status(self) -> str: ...

    @property
    def error(self) -> str: ...


class SagaDriver(Protocol):
    """Takes a saga over through its lease and drives it to its end: what the replay tool's
    verbs call. `orchestrator.saga.recovery.Recoverer` implements it."""

    @property
    def definitions(self) -> Mapping[str, SagaDefinition[Any]]: ...

    async def recover(self, saga_id: str, *, parked: bool = False) -> DriveOutcome:
        """Resume it. `parked`: also a failed one (an operator's call)."""

    async def compensate(self, saga_id: str) -> DriveOutcome:
        """Undo it; the engine refuses this for a saga past its pivot."""
