"""After a failover, the stock reconciled from the facts before anything is sold again.

A standby promoted under asynchronous replication may lack the newest commits of the old
primary: holds, and the units they took. The claims of those sagas stand all the same:
their claim documents are in MongoDB (written w=majority), and the client was told 200.
Sold again, their units would be sold twice. So a PostgreSQL on a history the stock was
not reconciled on (a new timeline, or another system identifier) refuses every reserve
(reserve_units answers 'unreconciled') until this has run there:

1. every claim document whose saga has no hold gets its hold back, confirmed, with its
   unit taken again;
2. every claim document whose hold is still held, and whose saga is no longer in flight
   to confirm it, is confirmed (the confirm was lost);
3. every claim saga still in flight in the saga log, going forward, gets its hold back,
   held: its reserve may have been acknowledged by the old primary, and its confirm must
   find the unit it took;
4. the history is recorded as reconciled, and reserves go on.

A claim that cannot get its hold back (the user holds another unit, or no unit is left:
the loss was found too late) is reported for an operator; the audit finds the same. One
run at a time over every gateway (an advisory lock), and a run that finds the history
reconciled already does nothing. It reads every claim document: its time grows with
the claims.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sagas.definition import SagaDefinition
from sagas.ports import ClaimLedger, HoldStatus, Inventory, Lineage, LostHold, SagaLog
from sagas.records import SagaStatus

_RESTORED = "restored"
_CONFIRMED = "confirmed"


@dataclass(frozen=True)
class Reconciled:
    was: Lineage | None  # None: the stock had never been reconciled (a first start)
    now: Lineage
    claims_restored: int
    claims_confirmed: int
    in_flight_restored: int
    not_restored: list[str] = field(default_factory=list)  # for an operator, one each


class Reconciliation:
    def __init__(
        self,
        inventory: Inventory,
        claims: ClaimLedger,
        saga_log: SagaLog,
        definitions: Mapping[str, SagaDefinition[Any]],
    ) -> None:
        """`definitions`: the sagas whose payload names a (user, coupon) unit of stock."""
        self._inventory = inventory
        self._claims = claims
        self._log = saga_log
        self._definitions = definitions

    async def __call__(self) -> Reconciled | None:
        """Reconcile if the server is on a history not reconciled yet; None if it is not."""
        if await self._inventory.lineage() == await self._inventory.reconciled_lineage():
            return None  # the usual answer, without taking the lock
        async with self._inventory.reconciling():
            now = await self._inventory.lineage()
            was = await self._inventory.reconciled_lineage()
            if was == now:
                return None
            not_restored: list[str] = []
            in_flight = await self._in_flight(not_restored)
            claims = await self._claims_to_mend({hold.saga_id for hold in in_flight})
            mended = await self._restore(claims, HoldStatus.CONFIRMED, not_restored)
            in_flight_mended = await self._restore(in_flight, HoldStatus.HELD, not_restored)
            await self._inventory.mark_reconciled(now)
            return Reconciled(
                was,
                now,
                claims_restored=mended[_RESTORED],
                claims_confirmed=mended[_CONFIRMED],
                in_flight_restored=in_flight_mended[_RESTORED],
                not_restored=not_restored,
            )

    async def _claims_to_mend(self, in_flight: set[str]) -> list[LostHold]:
        """The claims whose hold the failover lost, and those whose confirm it lost (a
        held unit whose saga is no longer in flight to confirm it)."""
        to_mend: list[LostHold] = []
        for coupon in await self._inventory.coupon_names():
            claimants = await self._claims.claimants(coupon)
            snapshot = await self._inventory.snapshot(coupon)
            holds = {hold.saga_id: hold.status for hold in snapshot.holds} if snapshot else {}
            for saga_id, user in claimants.items():
                status = holds.get(saga_id)
                lost = status is None
                unconfirmed = status is HoldStatus.HELD and saga_id not in in_flight
                if lost or unconfirmed:
                    to_mend.append(LostHold(saga_id, coupon, user))
        return to_mend

    async def _in_flight(self, not_restored: list[str]) -> list[LostHold]:
        """Sagas going forward whose reserve may have landed on the old primary. One whose
        payload cannot be read (written by another version, or by hand) is reported, not
        allowed to stop the reconciliation: every reserve waits for it."""
        found = []
        for record in await self._log.find(SagaStatus.RUNNING, None):
            definition = self._definitions.get(record.name)
            if definition is None or record.compensating:
                continue
            try:
                payload = definition.bind(record).arguments
            except (KeyError, TypeError, ValueError) as error:
                not_restored.append(
                    f"saga {record.saga_id}: its payload cannot be read "
                    f"({type(error).__name__}: {error}); its hold, if lost, is not restored"
                )
                continue
            found.append(LostHold(record.saga_id, payload.coupon_name, payload.user_id))
        return found

    async def _restore(
        self, holds: list[LostHold], status: HoldStatus, not_restored: list[str]
    ) -> Counter[str]:
        """Restore `holds` with `status`: how many of them had each outcome."""
        if not holds:
            return Counter()
        outcomes = await self._inventory.restore_holds(holds, status)
        for hold, outcome in zip(holds, outcomes, strict=True):
            # A saga in flight that gets no unit back meets its reserve as any other does
            # (already claimed, out of stock); a claim that stands without one is drift.
            if status is HoldStatus.CONFIRMED and outcome not in (_RESTORED, _CONFIRMED):
                not_restored.append(
                    f"saga {hold.saga_id} ({hold.user_id}, {hold.coupon_name}): "
                    f"{status.value} hold not restored: {outcome}"
                )
        return Counter(outcomes)
