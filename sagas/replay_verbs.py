"""The verbs of `coupon-saga` (orchestrator/cli.py), on the ports: what each finds and does,
and the exit code it ends with."""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sagas.definition import SagaDefinition, plan
from sagas.errors import CouponNotFound
from sagas.ports import SagaDriver, SagaLog
from sagas.records import SagaRecord, SagaStatus
from sagas.replay_output import (
    lease_json,
    list_table,
    listed,
    print_audit,
    print_json,
    print_note,
    print_pairs,
    recover_text,
    show_text,
    shown,
)
from sagas.timestamps import rfc3339_at

if TYPE_CHECKING:
    from sagas.audit import Auditor


class Exit(enum.IntEnum):
    OK = 0
    PROBLEMS = 1  # found something wrong, or a saga the tool may not touch now
    USAGE = 2
    UNAVAILABLE = 3  # a store did not answer, or the settings are wrong


class ToolError(Exception):
    """Ends the command with `code`: one line on stderr, or a JSON error with --json."""

    def __init__(self, code: Exit, kind: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code, self.kind, self.message, self.details = code, kind, message, details


LIST_FILTERS = ["in-flight", "stuck", *(status.value for status in SagaStatus)]
Where = Callable[[SagaRecord], bool]


# --- list and show: the saga log only ---------------------------------------------------


async def _select(
    saga_log: SagaLog, which: str | None, limit: int | None, where: Where | None = None
) -> list[SagaRecord]:
    """The first `limit` (None: all) sagas the filter `which` lists, for which `where` holds."""
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


def _of_coupon(coupon: str | None) -> Where | None:
    return None if coupon is None else lambda record: record.payload.get("coupon_name") == coupon


async def list_sagas(
    saga_log: SagaLog, which: str | None, coupon: str | None, limit: int, *, json_out: bool
) -> Exit:
    # One more than asked for, to tell whether the answer was cut.
    records = await _select(saga_log, which, limit + 1, _of_coupon(coupon))
    cut, records = len(records) > limit, records[:limit]
    if json_out:
        print_json([listed(r) for r in records])
    else:
        print(list_table(records))
    if cut:
        print_note(f"showing {limit} sagas; more match (raise --limit to see them)")
    return Exit.PROBLEMS if which in ("failed", "stuck") and records else Exit.OK


async def _existing(saga_log: SagaLog, saga_id: str) -> SagaRecord:
    record = await saga_log.load(saga_id)
    if record is None:
        raise ToolError(
            Exit.PROBLEMS,
            "not_found",
            f"no saga {saga_id} in the log (finished sagas expire after the retention period)",
        )
    return record


async def show_saga(saga_log: SagaLog, saga_id: str, *, json_out: bool) -> Exit:
    record = await _existing(saga_log, saga_id)
    events = await saga_log.history(saga_id)
    lease = await saga_log.lease(saga_id)
    if json_out:
        print_json(shown(record, events, lease))
    else:
        print(show_text(record, events, lease))
    return Exit.OK


# --- resume, compensate, recover: re-driving sagas --------------------------------------


def _refuse_compensation(definition: SagaDefinition[Any], record: SagaRecord) -> None:
    """Only a saga short of its pivot can be undone."""
    if record.status is SagaStatus.COMPLETED:
        raise ToolError(
            Exit.PROBLEMS,
            "refused",
            f"saga {record.saga_id} is completed: its claim stands and cannot be compensated",
        )
    if definition.past_pivot(record):
        raise ToolError(
            Exit.PROBLEMS,
            "refused",
            f"saga {record.saga_id} is past its pivot; use resume to finish it",
        )


async def _refuse_if_driven(saga_log: SagaLog, saga_id: str, *, dry_run: bool) -> None:
    """A saga under a live lease belongs to its driver: the log refuses a takeover."""
    lease = await saga_log.lease(saga_id)
    if lease is None or not lease.live:
        return
    refused = "would be refused" if dry_run else "refused"
    raise ToolError(
        Exit.PROBLEMS,
        "refused",
        f"{refused}: saga {saga_id} is being driven by {lease.owner or 'another process'}; "
        f"its lease ends at {rfc3339_at(lease.expires_at)}, try after that",
        lease=lease_json(lease),
    )


async def drive_one(
    saga_log: SagaLog,
    recoverer: SagaDriver,
    verb: str,
    saga_id: str,
    *,
    dry_run: bool,
    json_out: bool,
) -> Exit:
    record = await _existing(saga_log, saga_id)
    definition = recoverer.definitions[record.name]
    if verb == "compensate":
        _refuse_compensation(definition, record)
    if record.status.finished:
        print_pairs(
            {"saga_id": saga_id, "status": record.status.value, "did": "nothing"}, json_out=json_out
        )
        return Exit.OK
    await _refuse_if_driven(saga_log, saga_id, dry_run=dry_run)
    if dry_run:
        would = plan(definition, record) if verb == "resume" else "compensate: undo what is done"
        print_pairs(
            {"saga_id": saga_id, "status": record.status.value, "would": would}, json_out=json_out
        )
        return Exit.OK
    if verb == "resume":
        result = await recoverer.recover(saga_id, parked=True)
    else:
        result = await recoverer.compensate(saga_id)
    if result.skipped:  # taken between our look and our takeover
        await _refuse_if_driven(saga_log, saga_id, dry_run=False)
        raise ToolError(Exit.PROBLEMS, "refused", f"saga {saga_id} was taken by another process")
    print_pairs(
        {"saga_id": saga_id, "status": result.shown_status, "error": result.error},
        json_out=json_out,
    )
    return Exit.OK if result.ended_well else Exit.PROBLEMS


def _origin(record: SagaRecord) -> dict[str, str]:
    return {
        "saga_id": record.saga_id,
        "coupon": str(record.payload.get("coupon_name", "")),
        "user": str(record.payload.get("user_id", "")),
        "from": f"{record.status.value} at {record.step}",
    }


async def recover_all(
    saga_log: SagaLog,
    recoverer: SagaDriver,
    older_than: float,
    *,
    dry_run: bool,
    json_out: bool,
) -> Exit:
    """Each stuck saga, what it was and what became of it ("skipped": another process
    took it first)."""
    cutoff = time.time() - older_than
    records = [r for r in await _select(saga_log, "stuck", None) if r.updated_at <= cutoff]
    results: list[dict[str, str]] = []
    unfinished = 0
    for record in records:
        if dry_run:
            would = plan(recoverer.definitions[record.name], record)
            results.append({**_origin(record), "would": would})
        else:
            done = await recoverer.recover(record.saga_id)
            unfinished += not (done.skipped or done.ended_well)
            results.append({**_origin(record), "status": done.shown_status, "error": done.error})
    if json_out:
        print_json(results)
    else:
        print(recover_text(results, dry_run=dry_run))
    return Exit.PROBLEMS if unfinished else Exit.OK


async def audit_stores(
    auditor: Auditor, coupon: str | None, *, repair: bool, json_out: bool
) -> Exit:
    try:
        report = await auditor.audit(coupon, repair=repair)
    except CouponNotFound:
        raise ToolError(Exit.PROBLEMS, "not_found", f"no coupon {coupon}") from None
    print_audit(report, json_out=json_out)
    return Exit.PROBLEMS if report.outstanding else Exit.OK
