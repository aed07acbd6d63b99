"""Every route of the gateway, in one place."""

from __future__ import annotations

from aiohttp import web

from orchestrator.console.routes import setup_console
from orchestrator.http import views
from orchestrator.http.docs import setup_docs
from orchestrator.http.limits import expect_continue


def setup_routes(app: web.Application) -> None:
    post, get = app.router.add_post, app.router.add_get
    post("/api/coupons", views.create_coupon, expect_handler=expect_continue)
    post("/api/coupons/claim", views.claim_coupon, expect_handler=expect_continue)
    # Any name without "/" (the default pattern would also refuse "{" and "}").
    get("/api/coupons/{name:[^/]+}", views.get_coupon, expect_handler=expect_continue)
    get("/health", views.health, expect_handler=expect_continue)
    get("/ready", views.ready, expect_handler=expect_continue)
    get("/metrics", views.metrics, expect_handler=expect_continue)
    get("/openapi.json", views.openapi, expect_handler=expect_continue)
    setup_docs(app)  # a page for people, left out of /openapi.json (it is not the API)
    setup_console(app)  # the operators' pages (docs/CONSOLE.md), not the API either
