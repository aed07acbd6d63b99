"""The cross-store audit of the claim saga: docs/DESIGN.md's invariants 1-4, checked and repaired.

Each coupon is read in bulk to find suspects. Every suspect saga is then read again, one
store at a time in the order a saga moves through them (saga log, PostgreSQL, MongoDB), so
a saga that moved while the audit was reading is not reported as drift. A saga that a
driver still has (in flight in the log) is left to it.

Repairs settle a saga from the facts, never from the log: a unit held with no saga left to
finish it is confirmed if its claim document exists and released if not; a claim document
whose unit was given back is deleted; a confirmed unit whose document is gone gets it back.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from sagas.errors import AlreadyClaimed, CouponNotFound, SagaConflict
from sagas.ports import Claimed, ClaimLedger, CouponStock, Hold, HoldStatus, Inventory, SagaLog
from sagas.records import SagaStatus


class Drift(enum.StrEnum):
    OVERSOLD = "oversold"  # 1: more claims than units
    DOUBLE_CLAIM = "double_claim"  # 2: a user with two claims of one coupon
    STOCK_MISMATCH = "stock_mismatch"  # 3: remaining + live holds != amount
    UNSETTLED_HOLD = "unsettled_hold"  # 4: a unit held, and no saga left to settle it
    MISSING_CLAIM = "missing_claim"  # 4: a confirmed unit without its claim document
    ORPHAN_CLAIM = "orphan_claim"  # 4: a claim document whose unit is not taken
    FAILED_SAGA = "failed_saga"  # 6: parked for an operator (repair does not touch it)

    @property
    def repairable(self) -> bool:
        """Whether `--repair` settles it from the facts; the rest need an operator."""
        return self not in (Drift.OVERSOLD, Drift.DOUBLE_CLAIM, Drift.FAILED_SAGA)


@dataclass(frozen=True)
class Finding:
    drift: Drift
    coupon_name: str
    detail: str
    saga_id: str = ""
    user_id: str = ""
    repaired: str = ""  # what --repair changed; empty when nothing was


@dataclass
class AuditReport:
    coupons: int = 0
    holds: int = 0
    claims: int = 0
    in_flight: int = 0  # suspects left alone because a driver still has them
    findings: list[Finding] = field(default_factory=list)

    @property
    def outstanding(self) -> list[Finding]:
        return [finding for finding in self.findings if not finding.repaired]


class _Pending:
    """A suspect that is not drift yet: a driver has it, or it changed too recently."""


PENDING = _Pending()


class Auditor:
    def __init__(
        self,
        inventory: Inventory,
        claims: ClaimLedger,
        saga_log: SagaLog,
        *,
        settle_after_seconds: float,
    ) -> None:
        """`settle_after_seconds`: a held unit must be unchanged this long before it counts
        as abandoned. Longer than a saga lease, so no live driver is ever overtaken."""
        self._inventory = inventory
        self._claims = claims
        self._log = saga_log
        self._settle_after = settle_after_seconds

    async def audit(self, coupon_name: str | None = None, *, repair: bool = False) -> AuditReport:
        report = AuditReport()
        names = [coupon_name] if coupon_name else await self._inventory.coupon_names()
        for name in names:
            await self._audit_coupon(name, report, repair=repair)
        for record in await self._log.find(SagaStatus.FAILED, None):  # every parked one
            coupon = str(record.payload.get("coupon_name", ""))
            if coupon_name is None or coupon == coupon_name:
                report.findings.append(
                    Finding(
                        Drift.FAILED_SAGA,
                        coupon,
                        f"parked at {record.step}; see `coupon-saga show`, then resume "
                        "or compensate it",
                        record.saga_id,
                        str(record.payload.get("user_id", "")),
                    )
                )
        return report

    async def settle_stale_holds(self, limit: int = 100) -> list[Finding]:
        """Settle units held past the settle time whose saga record is gone or finished.

        The background half of reconciliation: what a Redis that lost its data leaves behind.
        """
        saga_ids = await self._inventory.stale_holds(self._settle_after, limit)
        statuses = await self._log.statuses(saga_ids)
        settled = []
        for saga_id in saga_ids:
            status = statuses.get(saga_id)
            if status is not None and not status.finished:
                continue  # recovery's to drive
            hold = await self._inventory.hold(saga_id)
            if hold is None:
                continue
            finding = await self._examine(saga_id, hold.coupon_name, hold.user_id)
            if isinstance(finding, Finding):
                settled.append(await self._repair(finding))
        return settled

    async def _audit_coupon(self, name: str, report: AuditReport, *, repair: bool) -> None:
        snapshot = await self._inventory.snapshot(name)
        if snapshot is None:
            raise CouponNotFound(name)
        claims = await self._claims.claims(name)
        report.coupons += 1
        report.holds += len(snapshot.holds)
        report.claims += len(claims)
        findings = _stock_findings(name, snapshot.stock, snapshot.holds, claims)
        for saga_id, user_id in _suspects(snapshot.holds, claims):
            finding = await self._examine(saga_id, name, user_id)
            if finding is PENDING:
                report.in_flight += 1
            elif isinstance(finding, Finding):
                findings.append(finding)
        for finding in findings:
            report.findings.append(await self._repair(finding) if repair else finding)

    async def _examine(self, saga_id: str, coupon: str, user: str) -> Finding | _Pending | None:
        """Read the saga again, store by store in the order it moves through them."""
        status = (await self._log.statuses([saga_id])).get(saga_id)
        if status is not None and (status.in_flight or status is SagaStatus.FAILED):
            return PENDING if status.in_flight else None  # failed sagas are listed apart
        hold = await self._inventory.hold(saga_id)
        claimed = await self._claims.exists(saga_id)
        gone = "finished" if status is not None else "no record"
        if hold is not None and hold.status is HoldStatus.HELD:
            if hold.age_seconds < self._settle_after:
                return PENDING
            has = "its claim document exists" if claimed else "no claim document"
            return Finding(Drift.UNSETTLED_HOLD, coupon, f"held, saga {gone}; {has}", saga_id, user)
        if hold is not None and hold.status is HoldStatus.CONFIRMED and not claimed:
            return Finding(
                Drift.MISSING_CLAIM, coupon, "confirmed, no claim document", saga_id, user
            )
        if claimed and (hold is None or hold.status is HoldStatus.RELEASED):
            unit = "its hold is released" if hold else "no hold"
            return Finding(Drift.ORPHAN_CLAIM, coupon, f"claim document, {unit}", saga_id, user)
        return None

    async def _repair(self, finding: Finding) -> Finding:
        saga_id, coupon, user = finding.saga_id, finding.coupon_name, finding.user_id
        did = ""
        match finding.drift:
            case Drift.UNSETTLED_HOLD if await self._claims.exists(saga_id):
                try:
                    await self._inventory.confirm(saga_id)
                    did = "confirmed the hold"
                except SagaConflict:
                    pass  # released meanwhile: the next audit sees an orphan claim
            case Drift.UNSETTLED_HOLD:
                if await self._inventory.release(saga_id, coupon, user):
                    did = "released the hold; the unit is back in stock"
                else:  # every gateway process settles; another one got there first
                    did = "settled meanwhile by another process"
            case Drift.MISSING_CLAIM:
                hold = await self._inventory.hold(saga_id)
                if hold is not None and hold.status is HoldStatus.CONFIRMED:
                    try:
                        await self._claims.record(saga_id, user, coupon, hold.created_at)
                        did = "recreated the claim document"
                    except AlreadyClaimed:
                        pass  # another saga's document holds (user, coupon): an operator's call
            case Drift.ORPHAN_CLAIM:
                if await self._claims.erase(saga_id):
                    did = "deleted the claim document"
            case Drift.STOCK_MISMATCH:
                before, after = await self._inventory.recount(coupon)
                did = f"remaining_amount {before} -> {after}"
            case _:
                pass  # oversold, double claims and failed sagas need an operator
        return Finding(finding.drift, coupon, finding.detail, saga_id, user, did)


def _stock_findings(
    name: str, stock: CouponStock, holds: Sequence[Hold], claims: Sequence[Claimed]
) -> list[Finding]:
    """Invariants 1-3 for one coupon, from one snapshot of its stock and its claims."""
    findings = []
    if stock.remaining_amount < 0 or len(claims) > stock.amount:
        findings.append(
            Finding(
                Drift.OVERSOLD,
                name,
                f"{len(claims)} claims for {stock.amount} units, "
                f"remaining_amount {stock.remaining_amount}",
            )
        )
    for user, count in Counter(claim.user_id for claim in claims).items():
        if count > 1:
            findings.append(Finding(Drift.DOUBLE_CLAIM, name, f"{count} claims", user_id=user))
    live = sum(1 for hold in holds if hold.status is not HoldStatus.RELEASED)
    if stock.remaining_amount + live != stock.amount:
        findings.append(
            Finding(
                Drift.STOCK_MISMATCH,
                name,
                f"remaining {stock.remaining_amount} + live holds {live} != amount {stock.amount}",
            )
        )
    return findings


def _suspects(holds: Sequence[Hold], claims: Sequence[Claimed]) -> list[tuple[str, str]]:
    """(saga id, user id) of every saga whose hold and claim document disagree."""
    claimed = {claim.saga_id for claim in claims}
    by_saga = {hold.saga_id: hold for hold in holds}
    suspects = [
        (hold.saga_id, hold.user_id)
        for hold in holds
        if hold.status is HoldStatus.HELD
        or (hold.status is HoldStatus.CONFIRMED and hold.saga_id not in claimed)
    ]
    for claim in claims:
        hold = by_saga.get(claim.saga_id)
        if hold is None or hold.status is HoldStatus.RELEASED:
            suspects.append((claim.saga_id, claim.user_id))
    return suspects
