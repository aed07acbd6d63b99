"""`coupon-saga`: the operators' tool to find, inspect and re-drive sagas, and audit the stores.

Exit codes: 0 fine, 1 problems found (a saga missing, failed sagas listed), 2 usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sagas.definition import plan
from sagas.errors import CouponNotFound, SagaConflict, StoreUnavailable
from sagas.ports import SagaLog
from sagas.records import SagaEvent, SagaRecord, SagaStatus

if TYPE_CHECKING:
    from orchestrator.recovery import Recoverer
    from sagas.audit import Auditor

OK, PROBLEMS, USAGE = 0, 1, 2
LIST_FILTERS = ["in-flight", "stuck", *(status.value for status in SagaStatus)]


def _when(epoch: float) -> str:
    return (
        datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def _record_json(record: SagaRecord) -> dict[str, Any]:
    return {
        "saga_id": record.saga_id,
        "name": record.name,
        "status": record.status.value,
        "step": record.step,
        "attempts": record.attempts,
        "error": record.error,
        "done": list(record.done),
        "payload": record.payload,
        "created_at": _when(record.created_at),
        "updated_at": _when(record.updated_at),
    }


def _event_json(event: SagaEvent) -> dict[str, Any]:
    return {
        "at": _when(event.at),
        "step": event.step,
        "phase": event.phase.value,
        "error": event.error,
    }


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(line.rstrip() for line in lines)


async def _select(saga_log: SagaLog, which: str | None, limit: int) -> list[SagaRecord]:
    if which == "stuck":
        found = [await saga_log.load(saga_id) for saga_id in await saga_log.stuck(limit)]
        return [record for record in found if record is not None]
    if which == "in-flight":
        return [r for r in await saga_log.find(None, limit) if r.status.in_flight]
    return await saga_log.find(SagaStatus(which) if which else None, limit)


async def list_sagas(
    saga_log: SagaLog, which: str | None, coupon: str | None, limit: int, as_json: bool
) -> int:
    records = await _select(saga_log, which, limit if coupon is None else 100_000)
    if coupon is not None:
        records = [r for r in records if r.payload.get("coupon_name") == coupon][:limit]
    if as_json:
        print(json.dumps([_record_json(r) for r in records], ensure_ascii=False, indent=2))
    else:
        rows = [
            [
                r.saga_id,
                r.status.value,
                r.step,
                str(r.payload.get("coupon_name", "")),
                str(r.payload.get("user_id", "")),
                _when(r.updated_at),
                r.error[:60],
            ]
            for r in records
        ]
        print(_table(["SAGA", "STATUS", "STEP", "COUPON", "USER", "UPDATED", "ERROR"], rows))
    return PROBLEMS if which in ("failed", "stuck") and records else OK


async def show_saga(saga_log: SagaLog, saga_id: str, as_json: bool) -> int:
    record = await saga_log.load(saga_id)
    if record is None:
        print(
            f"no saga {saga_id} in the log (finished sagas expire after the retention period)",
            file=sys.stderr,
        )
        return PROBLEMS
    events = await saga_log.history(saga_id)
    if as_json:
        print(
            json.dumps(
                {**_record_json(record), "events": [_event_json(e) for e in events]},
                ensure_ascii=False,
                indent=2,
            )
        )
        return OK
    for key, value in _record_json(record).items():
        print(f"{key + ':':12} {value}")
    print()
    print(
        _table(
            ["AT", "STEP", "PHASE", "ERROR"],
            [[_when(e.at), e.step, e.phase.value, e.error] for e in events],
        )
    )
    return OK


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable output")
    parser = argparse.ArgumentParser(prog="coupon-saga", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", parents=[common], help="list sagas, newest first")
    listing.add_argument("--status", choices=LIST_FILTERS)
    listing.add_argument("--coupon", metavar="NAME")
    listing.add_argument("--limit", type=int, default=50)
    show = commands.add_parser("show", parents=[common], help="a saga's record and timeline")
    show.add_argument("saga_id")
    for verb, what in [
        ("resume", "drive a stuck or failed saga to its end"),
        ("compensate", "undo a saga that has not passed its pivot"),
    ]:
        command = commands.add_parser(verb, parents=[common], help=what)
        command.add_argument("saga_id")
        command.add_argument("--dry-run", action="store_true", help="say what would be done")
    recover = commands.add_parser("recover", parents=[common], help="drive every stuck saga")
    recover.add_argument(
        "--older-than",
        type=float,
        metavar="SECONDS",
        default=0.0,
        help="only sagas not updated for this long (besides a lapsed lease)",
    )
    recover.add_argument("--dry-run", action="store_true", help="say what would be done")
    audit = commands.add_parser(
        "audit", parents=[common], help="check invariants 1-4 across PostgreSQL and MongoDB"
    )
    audit.add_argument("--coupon", metavar="NAME", help="only this coupon")
    audit.add_argument(
        "--repair", action="store_true", help="reconcile what the facts allow, and say what"
    )
    return parser


def _emit(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
    else:
        print("  ".join(f"{key}={value}" for key, value in result.items() if value != ""))


async def drive_one(
    saga_log: SagaLog,
    recoverer: Recoverer,
    verb: str,
    saga_id: str,
    *,
    dry_run: bool,
    as_json: bool,
) -> int:
    record = await saga_log.load(saga_id)
    if record is None:
        print(f"no saga {saga_id} in the log", file=sys.stderr)
        return PROBLEMS
    definition = recoverer.definitions[record.name]
    past_pivot = definition.pivot in record.done and not record.compensating
    if verb == "compensate" and past_pivot:
        print(
            f"refused: saga {saga_id} is past its pivot; use resume to finish it", file=sys.stderr
        )
        return PROBLEMS
    if record.status.finished:
        _emit({"saga_id": saga_id, "status": record.status.value, "did": "nothing"}, as_json)
        return OK
    if dry_run:
        would = plan(definition, record) if verb == "resume" else "compensate: undo what is done"
        _emit({"saga_id": saga_id, "status": record.status.value, "would": would}, as_json)
        return OK
    if verb == "resume":
        result = await recoverer.recover(saga_id, parked=True)
    else:
        result = await recoverer.compensate(saga_id)
    if result.status == "skipped":
        print(
            f"saga {saga_id} is being driven by a live process; try after its lease",
            file=sys.stderr,
        )
        return PROBLEMS
    _emit({"saga_id": saga_id, "status": result.status, "error": result.error}, as_json)
    return OK if result.status in ("completed", "compensated") else PROBLEMS


async def recover_all(
    saga_log: SagaLog,
    recoverer: Recoverer,
    older_than: float,
    *,
    dry_run: bool,
    as_json: bool,
) -> int:
    cutoff = time.time() - older_than
    records = [r for r in await _select(saga_log, "stuck", 10_000) if r.updated_at <= cutoff]
    results: list[dict[str, Any]] = []
    for record in records:
        if dry_run:
            would = plan(recoverer.definitions[record.name], record)
            results.append({"saga_id": record.saga_id, "would": would})
        else:
            done = await recoverer.recover(record.saga_id)
            results.append({"saga_id": done.saga_id, "status": done.status, "error": done.error})
    if as_json:
        print(json.dumps(results, ensure_ascii=False, indent=2))
    else:
        for result in results:
            _emit(result, False)
        print(f"{len(results)} stuck saga(s)")
    failed = [r for r in results if r.get("status") not in (None, "completed", "compensated")]
    return PROBLEMS if failed else OK


async def audit_stores(auditor: Auditor, coupon: str | None, *, repair: bool, as_json: bool) -> int:
    report = await auditor.audit(coupon, repair=repair)
    findings = [
        {
            "drift": f.drift.value,
            "coupon": f.coupon_name,
            "saga_id": f.saga_id,
            "user_id": f.user_id,
            "detail": f.detail,
            "repaired": f.repaired,
        }
        for f in report.findings
    ]
    summary = {
        "coupons": report.coupons,
        "holds": report.holds,
        "claims": report.claims,
        "in_flight": report.in_flight,
        "drift": len(report.findings),
        "repaired": len(report.findings) - len(report.outstanding),
        "outstanding": len(report.outstanding),
    }
    if as_json:
        print(json.dumps({**summary, "findings": findings}, ensure_ascii=False, indent=2))
    else:
        if findings:
            print(_table([k.upper() for k in findings[0]], [list(f.values()) for f in findings]))
            print()
        print("  ".join(f"{key}={value}" for key, value in summary.items()))
    return PROBLEMS if report.outstanding else OK


async def _run(args: argparse.Namespace) -> int:
    # The entry point wires real stores; everything above works on ports.
    from orchestrator.bootstrap import open_components, redis_client, redis_saga_log
    from orchestrator.settings import Settings

    # An operator's command fails fast with the store's name rather than waiting for it.
    settings = Settings().model_copy(update={"startup_wait_seconds": 0.0})
    if args.command in ("list", "show"):
        # Only Redis: an operator must be able to look while another store is down.
        async with redis_client(settings) as client:
            redis_log = redis_saga_log(settings, client)
            if args.command == "list":
                return await list_sagas(redis_log, args.status, args.coupon, args.limit, args.json)
            return await show_saga(redis_log, args.saga_id, args.json)
    async with open_components(settings) as components:
        saga_log = components.coupons.saga_log
        if args.command == "audit":
            return await audit_stores(
                components.auditor, args.coupon, repair=args.repair, as_json=args.json
            )
        if args.command == "recover":
            return await recover_all(
                saga_log,
                components.recoverer,
                args.older_than,
                dry_run=args.dry_run,
                as_json=args.json,
            )
        return await drive_one(
            saga_log,
            components.recoverer,
            args.command,
            args.saga_id,
            dry_run=args.dry_run,
            as_json=args.json,
        )


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)  # exits 2 on a usage error
    try:
        sys.exit(asyncio.run(_run(args)))
    except (StoreUnavailable, SagaConflict) as error:
        print(f"coupon-saga: {error}", file=sys.stderr)
        sys.exit(PROBLEMS)
    except CouponNotFound as error:
        print(f"coupon-saga: no coupon {error}", file=sys.stderr)
        sys.exit(PROBLEMS)


if __name__ == "__main__":
    main()
