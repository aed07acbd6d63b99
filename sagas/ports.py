"""The stores as the sagas see them. `services/` implements each Protocol."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sagas.records import SagaEvent, SagaRecord, SagaStatus


@dataclass(frozen=True)
class CouponStock:
    name: str
    amount: int
    remaining_amount: int


class Inventory(Protocol):
    async def create_coupon(self, name: str, amount: int) -> CouponStock: ...

    async def get_coupon(self, name: str) -> CouponStock | None: ...

    async def reserve(self, saga_id: str, coupon_name: str, user_id: str) -> None: ...

    async def release(self, saga_id: str, coupon_name: str, user_id: str) -> bool: ...

    async def confirm(self, saga_id: str) -> None: ...


class ClaimLedger(Protocol):
    async def record(
        self, saga_id: str, user_id: str, coupon_name: str, claimed_at: datetime
    ) -> datetime: ...

    async def erase(self, saga_id: str) -> bool: ...

    async def exists(self, saga_id: str) -> bool: ...

    async def claimants(self, coupon_name: str) -> list[str]: ...


class SagaLog(Protocol):
    async def create(self, record: SagaRecord, events: Sequence[SagaEvent]) -> None: ...

    async def save(self, record: SagaRecord, events: Sequence[SagaEvent]) -> None:
        """Raises LeaseLost if the stored epoch is not the record's (or the record is gone)."""

    async def acquire(self, saga_id: str, owner: str, *, parked: bool) -> SagaRecord | None:
        """Take over a saga whose lease ran out (and, if `parked`, a failed one)."""

    async def stuck(self, limit: int) -> list[str]: ...

    async def load(self, saga_id: str) -> SagaRecord | None: ...

    async def history(self, saga_id: str) -> list[SagaEvent]: ...

    async def find(self, status: SagaStatus | None, limit: int) -> list[SagaRecord]: ...
