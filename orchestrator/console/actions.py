"""The console's buttons: resume and compensate, each after its dry run, and the audit,
whose run is the repair's dry run. The checks and the drive are the replay tool's
(sagas/operations.py); a refusal is answered by the gate (routes.py)."""

from __future__ import annotations

from aiohttp import web

from orchestrator.console.params import console_of, saga_id_in, text_in
from orchestrator.console.render import render, saga_url, see_other
from sagas import operations
from sagas.audit import AuditReport
from sagas.operations import Refused
from sagas.replay_output import audit_findings, audit_summary


async def drive_plan(request: web.Request) -> web.Response:
    """The dry run of resume or compensate, and the button that confirms it."""
    console = console_of(request)
    verb, saga_id = request.match_info["verb"], saga_id_in(request.match_info["saga_id"])
    try:
        drive = await operations.check_drive(
            console.saga_log, console.driver, verb, saga_id, dry_run=True
        )
    except Refused as refused:
        if refused.kind == "not_found":
            raise
        return render(
            request,
            "drive.html",
            status=409,
            title=verb,
            verb=verb,
            saga_id=saga_id,
            refused=refused.message,
            drive=None,
        )
    return render(
        request, "drive.html", title=verb, verb=verb, saga_id=saga_id, refused=None, drive=drive
    )


async def drive(request: web.Request) -> web.Response:
    """Resume or compensate, confirmed: the replay tool's check, then its drive."""
    console = console_of(request)
    verb, saga_id = request.match_info["verb"], saga_id_in(request.match_info["saga_id"])
    checked = await operations.check_drive(
        console.saga_log, console.driver, verb, saga_id, dry_run=False
    )
    if not checked.nothing:
        await operations.carry_out(console.saga_log, console.driver, checked)
    return see_other(f"{saga_url(saga_id)}?did={verb}")


async def audit_page(request: web.Request) -> web.Response:
    coupon = text_in(request, "coupon")
    if not request.query.get("run"):
        return render(request, "audit.html", title="Audit", coupon=coupon, report=None)
    report = await operations.audit(console_of(request).auditor, coupon, repair=False)
    return _audit_answer(request, coupon, report, repaired=False)


async def repair(request: web.Request) -> web.Response:
    form = await request.post()
    coupon = str(form.get("coupon", "")).strip() or None
    report = await operations.audit(console_of(request).auditor, coupon, repair=True)
    return _audit_answer(request, coupon, report, repaired=True)


def _audit_answer(
    request: web.Request, coupon: str | None, report: AuditReport, *, repaired: bool
) -> web.Response:
    findings = audit_findings(report)
    repairable = any(finding.drift.repairable for finding in report.outstanding)
    return render(
        request,
        "audit.html",
        title="Audit",
        coupon=coupon,
        report=report,
        summary=audit_summary(report),
        findings=findings,
        repairable=repairable,
        repaired=repaired,
    )
