"""What an operator can find and do with sagas, on the ports: the one implementation
behind `coupon-saga`'s verbs (sagas/replay_verbs.py prints them) and the console's pages
and buttons (orchestrator/console/). Nothing here prints or knows HTTP."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sagas.definition import SagaDefinition, plan
from sagas.errors import CouponNotFound
from sagas.ports import SagaDriver, SagaLog
from sagas.records import Lease, SagaEvent, SagaRecord, SagaStatus
from sagas.replay_output import lease_json
from sagas.timestamps import rfc3339_at

if TYPE_CHECKING:
    from sagas.audit import Auditor, AuditReport

LIST_FILTERS = ["in-flight", "stuck", *(status.value for status in SagaStatus)]
Where = Callable[[SagaRecord], bool]
VERBS = ("resume", "compensate")


class Refused(Exception):
    """The operation cannot be done (now): `kind` is `not_found` or `refused`, `message`
    says why for a person, `details` adds what a machine may want (a lease)."""

    def __init__(self, kind: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.kind, self.message, self.details = kind, message, details


# --- looking: the saga log only ---------------------------------------------------------


async def select(
    saga_log: SagaLog, which: str | None, limit: int | None, where: Where | None = None
) -> list[SagaRecord]:
    """The first `limit` (None: all) sagas the filter `which` lists, for which `where` holds,
    newest first; reading about as many as it returns (SagaLog.find)."""
    if which == "stuck":
        saga_ids = await saga_log.stuck(limit if where is None else None)
        found = [await saga_log.load(saga_id) for saga_id in saga_ids]
        return [r for r in found if r is not None and (where is None or where(r))][:limit]
    if which == "in-flight":
        running = await saga_log.find(SagaStatus.RUNNING, limit, where=where)
        compensating = await saga_log.find(SagaStatus.COMPENSATING, limit, where=where)
        newest_first = sorted(running + compensating, key=lambda r: r.updated_at, reverse=True)
        return newest_first[:limit]
    return await saga_log.find(SagaStatus(which) if which else None, limit, where=where)


def matching(
    *, coupon: str | None = None, user: str | None = None, before: float | None = None
) -> Where | None:
    """Sagas of this coupon, of this user, last updated before this time (a page's end);
    None: every saga."""
    tests: list[Where] = []
    if coupon is not None:
        tests.append(lambda record: record.payload.get("coupon_name") == coupon)
    if user is not None:
        tests.append(lambda record: record.payload.get("user_id") == user)
    if before is not None:
        tests.append(lambda record: record.updated_at < before)
    if not tests:
        return None
    return lambda record: all(test(record) for test in tests)


@dataclass(frozen=True)
class Page:
    records: list[SagaRecord]
    more: bool  # more sagas match past the last of these


async def page_of_sagas(
    saga_log: SagaLog, which: str | None, limit: int, where: Where | None = None
) -> Page:
    # One more than asked for, to tell whether the answer was cut.
    records = await select(saga_log, which, limit + 1, where)
    return Page(records[:limit], len(records) > limit)


@dataclass(frozen=True)
class SagaView:
    """A saga as the log has it: its record, its history and its lease."""

    record: SagaRecord
    events: list[SagaEvent]
    lease: Lease | None


async def existing(saga_log: SagaLog, saga_id: str) -> SagaRecord:
    record = await saga_log.load(saga_id)
    if record is None:
        raise Refused(
            "not_found",
            f"no saga {saga_id} in the log (finished sagas expire after the retention period)",
        )
    return record


async def view_saga(saga_log: SagaLog, saga_id: str) -> SagaView:
    record = await existing(saga_log, saga_id)
    return SagaView(record, await saga_log.history(saga_id), await saga_log.lease(saga_id))


# --- resume and compensate: re-driving one saga -----------------------------------------


@dataclass(frozen=True)
class Drive:
    """What `verb` finds a saga to need, checked before anything is done."""

    verb: str
    record: SagaRecord
    would: str  # the plan, in one line; "" when there is nothing to do (it is finished)

    @property
    def nothing(self) -> bool:
        return not self.would


@dataclass(frozen=True)
class Driven:
    saga_id: str
    status: str
    error: str
    ended_well: bool


def _refuse_compensation(definition: SagaDefinition[Any], record: SagaRecord) -> None:
    """Only a saga short of its pivot can be undone."""
    if record.status is SagaStatus.COMPLETED:
        raise Refused(
            "refused",
            f"saga {record.saga_id} is completed: its claim stands and cannot be compensated",
        )
    if definition.past_pivot(record):
        raise Refused(
            "refused", f"saga {record.saga_id} is past its pivot; use resume to finish it"
        )


async def _refuse_if_driven(saga_log: SagaLog, saga_id: str, *, dry_run: bool) -> None:
    """A saga under a live lease belongs to its driver: the log refuses a takeover."""
    lease = await saga_log.lease(saga_id)
    if lease is None or not lease.live:
        return
    refused = "would be refused" if dry_run else "refused"
    raise Refused(
        "refused",
        f"{refused}: saga {saga_id} is being driven by {lease.owner or 'another process'}; "
        f"its lease ends at {rfc3339_at(lease.expires_at)}, try after that",
        lease=lease_json(lease),
    )


async def check_drive(
    saga_log: SagaLog, driver: SagaDriver, verb: str, saga_id: str, *, dry_run: bool
) -> Drive:
    """Whether `verb` (resume or compensate) may drive the saga, and what it would do:
    the dry run, and the check before the real run. Raises Refused."""
    if verb not in VERBS:
        raise ValueError(f"not a verb that drives a saga: {verb!r}")
    record = await existing(saga_log, saga_id)
    definition = driver.definitions[record.name]
    if verb == "compensate":
        _refuse_compensation(definition, record)
    if record.status.finished:
        return Drive(verb, record, "")
    await _refuse_if_driven(saga_log, saga_id, dry_run=dry_run)
    would = plan(definition, record) if verb == "resume" else "compensate: undo what is done"
    return Drive(verb, record, would)


async def carry_out(saga_log: SagaLog, driver: SagaDriver, drive: Drive) -> Driven:
    """Drive the saga as `check_drive` (not a dry run) found it may be. Raises Refused
    when another process took it between the check and the takeover."""
    saga_id = drive.record.saga_id
    if drive.verb == "resume":
        result = await driver.recover(saga_id, parked=True)
    else:
        result = await driver.compensate(saga_id)
    if result.skipped:  # taken between our look and our takeover
        await _refuse_if_driven(saga_log, saga_id, dry_run=False)
        raise Refused("refused", f"saga {saga_id} was taken by another process")
    return Driven(saga_id, result.shown_status, result.error, result.ended_well)


# --- the audit ---------------------------------------------------------------------------


async def audit(auditor: Auditor, coupon: str | None, *, repair: bool) -> AuditReport:
    try:
        return await auditor.audit(coupon, repair=repair)
    except CouponNotFound:
        raise Refused("not_found", f"no coupon {coupon}") from None
