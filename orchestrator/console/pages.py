"""The console's pages: each reads through sagas/operations.py (the replay tool's code)
or reads.py, and renders a template; refusals and stores away are the console's answers
(routes.py), not the API's JSON. The buttons' pages are actions.py."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from orchestrator.console import access
from orchestrator.console.params import console_of, saga_id_in, text_in
from orchestrator.console.reads import COUPONS_SHOWN, Console, Sales, sales, store_facts
from orchestrator.console.render import render, saga_url, sagas_url, see_other
from orchestrator.console.timeline import timeline
from sagas import operations
from sagas.operations import VERBS, Refused
from sagas.records import tries

PAGE_SIZE = 50  # sagas a page, unless the query asks for 1 to MAX_PAGE_SIZE
MAX_PAGE_SIZE = 500
REFRESH_SECONDS = 2


async def front(request: web.Request) -> web.Response:
    coupon = text_in(request, "coupon")
    found = await sales(console_of(request), coupon)
    live_url = "/console/live.json" + (f"?{request.query_string}" if coupon else "")
    return render(
        request,
        "sales.html",
        title="Sales",
        sales=found,
        coupon=coupon,
        shown=COUPONS_SHOWN,
        totals=console_of(request).claim_totals(),
        live_url=live_url,
        refresh_seconds=REFRESH_SECONDS,
    )


async def live(request: web.Request) -> web.Response:
    """The live view's reading: the claim counters and the coupons' rows, as JSON; the
    page's script turns two readings into rates."""
    console = console_of(request)
    found = await sales(console, text_in(request, "coupon"))
    totals = console.claim_totals()
    body = {
        "at": time.time(),
        "claimed": totals.claimed,
        "unavailable": totals.unavailable,
        "refused": dict(totals.refused),
        "parked": found.parked_total,
        "stuck": found.stuck,
        "stores_away": found.unavailable,
        "coupons": _rows(found),
    }
    response = web.json_response(body)
    response.headers.update(access.SECURITY_HEADERS)
    return response


def _rows(found: Sales) -> list[dict[str, Any]]:
    return [
        {
            "name": row.tally.stock.name,
            "amount": row.tally.stock.amount,
            "remaining": row.tally.stock.remaining_amount,
            "claims": row.claims,
            "held": row.tally.held,
            "confirmed": row.tally.confirmed,
            "parked": row.parked,
        }
        for row in found.coupons
    ]


async def sagas(request: web.Request) -> web.Response:
    if saga := text_in(request, "saga"):
        return see_other(saga_url(saga_id_in(saga.strip())))
    which = text_in(request, "status")
    if which is not None and which not in operations.LIST_FILTERS:
        raise Refused("not_found", f"no such status: {which!r}")
    coupon, user = text_in(request, "coupon"), text_in(request, "user")
    before, limit = _before(request), _limit(request)
    where = operations.matching(coupon=coupon, user=user, before=before)
    page = await operations.page_of_sagas(console_of(request).saga_log, which, limit, where)
    older = None
    if page.more and page.records:
        older = sagas_url(
            status=which,
            coupon=coupon,
            user=user,
            before=repr(page.records[-1].updated_at),
            limit=None if limit == PAGE_SIZE else str(limit),
        )
    return render(
        request,
        "sagas.html",
        title="Sagas",
        page=page,
        which=which,
        coupon=coupon,
        user=user,
        statuses=operations.LIST_FILTERS,
        limit=limit,
        older_url=older,
    )


def _limit(request: web.Request) -> int:
    raw = text_in(request, "limit")
    if raw is None:
        return PAGE_SIZE
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE_SIZE:
        raise Refused("not_found", f"not a page size from 1 to {MAX_PAGE_SIZE}: {raw!r}")
    return int(raw)


def _before(request: web.Request) -> float | None:
    raw = text_in(request, "before")
    try:
        return None if raw is None else float(raw)
    except ValueError:
        raise Refused("not_found", f"not a time: {raw!r}") from None


async def saga(request: web.Request) -> web.Response:
    console = console_of(request)
    saga_id = saga_id_in(request.match_info["saga_id"])
    view = await operations.view_saga(console.saga_log, saga_id)
    definition = console.driver.definitions.get(view.record.name)
    drives = [(verb, await _dry_run(console, verb, saga_id)) for verb in VERBS]
    did = request.query.get("did")
    return render(
        request,
        "saga.html",
        title=f"Saga {saga_id}",
        view=view,
        attempts=tries(view.events),
        timeline=timeline(definition, view.events),
        facts=await store_facts(console, saga_id),
        drives=drives,
        did=did if did in VERBS else None,
    )


async def _dry_run(console: Console, verb: str, saga_id: str) -> str:
    """What `verb` would do, or why it would be refused: one line beside its button."""
    try:
        drive = await operations.check_drive(
            console.saga_log, console.driver, verb, saga_id, dry_run=True
        )
    except Refused as refused:
        return refused.message
    return drive.would or f"nothing: the saga is {drive.record.status.value}"
