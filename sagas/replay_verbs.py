"""The verbs of `coupon-saga` (orchestrator/cli.py): what each prints and the exit code it
ends with. What they find and do is sagas/operations.py, which the console uses too."""

from __future__ import annotations

import enum
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from sagas.definition import plan
from sagas.operations import (
    Refused,
    audit,
    carry_out,
    check_drive,
    matching,
    page_of_sagas,
    select,
    view_saga,
)
from sagas.ports import SagaDriver, SagaLog
from sagas.records import SagaRecord
from sagas.replay_output import (
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


@asynccontextmanager
async def _problems() -> AsyncIterator[None]:
    """An operation refused (no such saga, a live lease, past the pivot) ends with exit 1."""
    try:
        yield
    except Refused as refused:
        raise ToolError(Exit.PROBLEMS, refused.kind, refused.message, **refused.details) from None


# --- list and show: the saga log only ---------------------------------------------------


async def list_sagas(
    saga_log: SagaLog, which: str | None, coupon: str | None, limit: int, *, json_out: bool
) -> Exit:
    page = await page_of_sagas(saga_log, which, limit, matching(coupon=coupon))
    if json_out:
        print_json([listed(r) for r in page.records])
    else:
        print(list_table(page.records))
    if page.more:
        print_note(f"showing {limit} sagas; more match (raise --limit to see them)")
    return Exit.PROBLEMS if which in ("failed", "stuck") and page.records else Exit.OK


async def show_saga(saga_log: SagaLog, saga_id: str, *, json_out: bool) -> Exit:
    async with _problems():
        view = await view_saga(saga_log, saga_id)
    if json_out:
        print_json(shown(view.record, view.events, view.lease))
    else:
        print(show_text(view.record, view.events, view.lease))
    return Exit.OK


# --- resume, compensate, recover: re-driving sagas --------------------------------------


async def drive_one(
    saga_log: SagaLog,
    recoverer: SagaDriver,
    verb: str,
    saga_id: str,
    *,
    dry_run: bool,
    json_out: bool,
) -> Exit:
    async with _problems():
        drive = await check_drive(saga_log, recoverer, verb, saga_id, dry_run=dry_run)
        status = drive.record.status.value
        if drive.nothing:
            print_pairs({"saga_id": saga_id, "status": status, "did": "nothing"}, json_out=json_out)
            return Exit.OK
        if dry_run:
            print_pairs(
                {"saga_id": saga_id, "status": status, "would": drive.would}, json_out=json_out
            )
            return Exit.OK
        driven = await carry_out(saga_log, recoverer, drive)
    print_pairs(
        {"saga_id": saga_id, "status": driven.status, "error": driven.error}, json_out=json_out
    )
    return Exit.OK if driven.ended_well else Exit.PROBLEMS


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
    records = [r for r in await select(saga_log, "stuck", None) if r.updated_at <= cutoff]
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
    async with _problems():
        report = await audit(auditor, coupon, repair=repair)
    print_audit(report, json_out=json_out)
    return Exit.PROBLEMS if report.outstanding else Exit.OK
