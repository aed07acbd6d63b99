"""What `coupon-saga` prints: JSON with `--json`, aligned text otherwise; errors likewise.

Values are printed as data (JSON), never as Python reprs, and every time in one format
(sagas/timestamps.py).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from sagas.audit import AuditReport
from sagas.records import Lease, SagaEvent, SagaRecord, tries
from sagas.timestamps import rfc3339_at


def print_json(value: Any) -> None:
    print(json.dumps(value, ensure_ascii=False, indent=2))


def print_error(kind: str, message: str, details: Mapping[str, Any], *, json_out: bool) -> None:
    """With --json an error is a JSON object on stdout, like every other answer; otherwise
    one line on stderr."""
    if json_out:
        print_json({"error": kind, "message": message, **details})
    else:
        print_note(message)


def print_note(message: str) -> None:
    """A line on stderr, beside the answer: stdout stays parseable."""
    print(f"coupon-saga: {message}", file=sys.stderr)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(headers)]
    lines = [headers, *rows]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def print_pairs(result: Mapping[str, Any], *, json_out: bool) -> None:
    """A one-line result: `key=value` pairs, or a JSON object."""
    if json_out:
        print_json(result)
    else:
        print("  ".join(f"{key}={_text(value)}" for key, value in result.items() if value != ""))


def listed(record: SagaRecord) -> dict[str, Any]:
    """A saga as `list --json` gives it."""
    return {
        "saga_id": record.saga_id,
        "name": record.name,
        "status": record.status.value,
        "step": record.step,
        "error": record.error,
        "done": list(record.done),
        "payload": record.payload,
        "takeovers": record.recoveries,
        "created_at": rfc3339_at(record.created_at),
        "updated_at": rfc3339_at(record.updated_at),
    }


def list_table(records: Sequence[SagaRecord]) -> str:
    rows = [
        [
            r.saga_id,
            r.status.value,
            r.step,
            str(r.payload.get("coupon_name", "")),
            str(r.payload.get("user_id", "")),
            rfc3339_at(r.updated_at),
            r.error[:60],
        ]
        for r in records
    ]
    return table(["SAGA", "STATUS", "STEP", "COUPON", "USER", "UPDATED", "ERROR"], rows)


def lease_json(lease: Lease | None) -> dict[str, Any] | None:
    if lease is None:
        return None
    return {
        "owner": lease.owner or None,
        "expires_at": rfc3339_at(lease.expires_at),
        "live": lease.live,
    }


def lease_text(lease: Lease | None) -> str:
    if lease is None:
        return "none (not in flight)"
    owner = lease.owner or "an unknown process"
    if lease.live:
        return f"held by {owner} until {rfc3339_at(lease.expires_at)}"
    return (
        f"ran out at {rfc3339_at(lease.expires_at)} (was {owner}): stuck, any recoverer may take it"
    )


def shown(record: SagaRecord, events: Sequence[SagaEvent], lease: Lease | None) -> dict[str, Any]:
    """A saga as `show --json` gives it. `attempts` counts every try at a store call from
    the events: the record's own count restarts at each step."""
    return {
        "saga_id": record.saga_id,
        "name": record.name,
        "status": record.status.value,
        "step": record.step,
        "attempts": tries(events),
        "takeovers": record.recoveries,
        "deferrals": record.deferrals,
        "epoch": record.epoch,
        "lease": lease_json(lease),
        "error": record.error,
        "done": list(record.done),
        "payload": record.payload,
        "created_at": rfc3339_at(record.created_at),
        "updated_at": rfc3339_at(record.updated_at),
        "events": [
            {
                "at": rfc3339_at(e.at),
                "step": e.step,
                "phase": e.phase.value,
                "error": e.error,
                "tries": e.tries,
            }
            for e in events
        ],
    }


def show_text(record: SagaRecord, events: Sequence[SagaEvent], lease: Lease | None) -> str:
    fields = shown(record, events, lease)
    timeline = fields.pop("events")
    fields["lease"] = lease_text(lease)
    head = [f"{key + ':':12} {_text(value)}".rstrip() for key, value in fields.items()]
    rows = [[e["at"], e["step"], _phase_text(e), e["error"]] for e in timeline]
    return "\n".join([*head, "", table(["AT", "STEP", "PHASE", "ERROR"], rows)])


def _phase_text(event: Mapping[str, Any]) -> str:
    """An event's phase, with the tries it counts when it stands for more than one."""
    tries = event["tries"]
    return event["phase"] if tries == 1 else f"{event['phase']} x{tries}"


def _text(value: Any) -> str:
    """A value in a line of text: strings as they are, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def recover_text(results: Sequence[Mapping[str, Any]], *, dry_run: bool) -> str:
    """One row per stuck saga (what it was, what became of it), then a count by outcome."""
    last = "WOULD" if dry_run else "OUTCOME"
    rows = [
        [r["saga_id"], r["coupon"], r["user"], r["from"], r.get("would") or r["status"]]
        + ([] if dry_run else [r["error"][:60]])
        for r in results
    ]
    headers = ["SAGA", "COUPON", "USER", "FROM", last] + ([] if dry_run else ["ERROR"])
    lines = [table(headers, rows)] if rows else []
    return "\n".join([*lines, _recover_summary(results, dry_run=dry_run)])


def _recover_summary(results: Sequence[Mapping[str, Any]], *, dry_run: bool) -> str:
    if not results:
        return "no stuck saga"
    if dry_run:
        return f"{len(results)} stuck saga(s) would be recovered"
    outcomes: dict[str, int] = {}
    for result in results:
        outcomes[result["status"]] = outcomes.get(result["status"], 0) + 1
    counts = ", ".join(f"{count} {status}" for status, count in sorted(outcomes.items()))
    return f"recovered {len(results)} stuck saga(s): {counts}"


def audit_findings(report: AuditReport) -> list[dict[str, str]]:
    return [
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


def audit_summary(report: AuditReport) -> dict[str, int]:
    return {
        "coupons": report.coupons,
        "holds": report.holds,
        "claims": report.claims,
        "in_flight": report.in_flight,
        "drift": len(report.findings),
        "repaired": len(report.findings) - len(report.outstanding),
        "outstanding": len(report.outstanding),
    }


def print_audit(report: AuditReport, *, json_out: bool) -> None:
    findings, summary = audit_findings(report), audit_summary(report)
    if json_out:
        print_json({**summary, "findings": findings})
        return
    if findings:
        print(table([k.upper() for k in findings[0]], [list(f.values()) for f in findings]))
        print()
    print_pairs(summary, json_out=False)
