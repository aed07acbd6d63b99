"""`coupon-saga`: the operators' tool to find and inspect sagas.

Exit codes: 0 fine, 1 problems found (a saga missing, failed sagas listed), 2 usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sagas.errors import StoreUnavailable
from sagas.ports import SagaLog
from sagas.records import SagaEvent, SagaRecord, SagaStatus

OK, PROBLEMS, USAGE = 0, 1, 2


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


async def list_sagas(
    saga_log: SagaLog, status: SagaStatus | None, coupon: str | None, limit: int, as_json: bool
) -> int:
    records = await saga_log.find(status, limit if coupon is None else 100_000)
    if coupon is not None:
        records = [r for r in records if r.payload.get("coupon_name") == coupon][:limit]
    if as_json:
        print(json.dumps([_record_json(r) for r in records], ensure_ascii=False, indent=2))
    else:
        print(
            _table(
                ["SAGA", "STATUS", "STEP", "COUPON", "USER", "UPDATED", "ERROR"],
                [
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
                ],
            )
        )
    return PROBLEMS if status is SagaStatus.FAILED and records else OK


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
    listing.add_argument("--status", choices=[s.value for s in SagaStatus])
    listing.add_argument("--coupon", metavar="NAME")
    listing.add_argument("--limit", type=int, default=50)
    show = commands.add_parser("show", parents=[common], help="a saga's record and timeline")
    show.add_argument("saga_id")
    return parser


async def _run(args: argparse.Namespace) -> int:
    # The entry point wires real stores; everything above works on the SagaLog port.
    from orchestrator.bootstrap import redis_client
    from orchestrator.settings import Settings
    from services.saga_log import RedisSagaLog

    settings = Settings()
    async with redis_client(settings) as client:
        saga_log = RedisSagaLog(client, settings.saga_retention_seconds)
        if args.command == "list":
            status = SagaStatus(args.status) if args.status else None
            return await list_sagas(saga_log, status, args.coupon, args.limit, args.json)
        return await show_saga(saga_log, args.saga_id, args.json)


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)  # exits 2 on a usage error
    try:
        sys.exit(asyncio.run(_run(args)))
    except StoreUnavailable as error:
        print(f"coupon-saga: {error}", file=sys.stderr)
        sys.exit(PROBLEMS)


if __name__ == "__main__":
    main()
