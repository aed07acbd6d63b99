"""The claim saga: reserve stock (PostgreSQL) → record the claim (MongoDB, the pivot) → confirm.

| step    | action                          | compensation                      |
| ------- | ------------------------------- | --------------------------------- |
| reserve | take a unit under a live hold   | release the hold, give the unit back |
| record  | insert the claim document       | erase it, leaving a tombstone     |
| confirm | mark the hold confirmed         | none: past the pivot, only forward |
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sagas.definition import SagaDefinition, Step
from sagas.ports import ClaimLedger, HoldStatus, Inventory
from sagas.timestamps import rfc3339

CLAIM_SAGA = "claim"


@dataclass(frozen=True)
class ClaimPayload:
    user_id: str
    coupon_name: str
    claimed_at: datetime  # fixed when the saga starts, so every replay records the same claim

    def to_dict(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "coupon_name": self.coupon_name,
            "claimed_at": rfc3339(self.claimed_at),
        }

    @classmethod
    def from_dict(cls, payload: Mapping[str, Any]) -> ClaimPayload:
        return cls(
            str(payload["user_id"]),
            str(payload["coupon_name"]),
            datetime.fromisoformat(str(payload["claimed_at"])),
        )


class ClaimSteps:
    """Each action and compensation is idempotent, keyed by the saga id."""

    def __init__(self, inventory: Inventory, claims: ClaimLedger) -> None:
        self._inventory = inventory
        self._claims = claims

    async def do_reserve(self, saga_id: str, claim: ClaimPayload) -> None:
        """Hold one unit for this saga. Key: saga_id (a replay finds its hold and succeeds).

        Keeps conservation: the hold and the decrement commit together, and a duplicate
        (same user, live hold) is refused by the unique index and takes nothing.
        """
        await self._inventory.reserve(saga_id, claim.coupon_name, claim.user_id)

    async def undo_reserve(self, saga_id: str, claim: ClaimPayload) -> None:
        """Release this saga's hold and give its unit back, only if it is still held.

        Leaves a released tombstone when there was no hold, so a late do_reserve of the
        same saga can never take a unit after its compensation.
        """
        await self._inventory.release(saga_id, claim.coupon_name, claim.user_id)

    async def do_record(self, saga_id: str, claim: ClaimPayload) -> None:
        """Insert the claim document. Key: saga_id (a duplicate carrying it is a replay).

        Keeps no-double-claim: the unique (user_id, coupon_name) index refuses a second claim.
        """
        await self._claims.record(saga_id, claim.user_id, claim.coupon_name, claim.claimed_at)

    async def undo_record(self, saga_id: str, claim: ClaimPayload) -> None:
        """Erase the claim document carrying this saga id, leaving a tombstone in its place
        (also when there is none yet), so a late do_record of the same saga records nothing."""
        await self._claims.erase(saga_id)

    async def recorded(self, saga_id: str, claim: ClaimPayload) -> bool:
        """Whether this saga's claim document exists: the fact that decides its direction."""
        return await self._claims.exists(saga_id)

    async def do_confirm(self, saga_id: str, claim: ClaimPayload) -> None:
        """Mark the hold confirmed. Key: saga_id (confirming a confirmed hold is a no-op)."""
        await self._inventory.confirm(saga_id)

    async def confirmed(self, saga_id: str, claim: ClaimPayload) -> bool:
        """Whether this saga's hold is confirmed."""
        hold = await self._inventory.hold(saga_id)
        return hold is not None and hold.status is HoldStatus.CONFIRMED


def claim_saga(inventory: Inventory, claims: ClaimLedger) -> SagaDefinition[ClaimPayload]:
    steps = ClaimSteps(inventory, claims)
    return SagaDefinition(
        name=CLAIM_SAGA,
        steps=(
            Step("reserve", steps.do_reserve, steps.undo_reserve),
            Step("record", steps.do_record, steps.undo_record, landed=steps.recorded),
            Step("confirm", steps.do_confirm, landed=steps.confirmed),
        ),
        pivot="record",
        encode=ClaimPayload.to_dict,
        decode=ClaimPayload.from_dict,
    )
