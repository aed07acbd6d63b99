"""Every route of the gateway, in one place."""

from __future__ import annotations

from aiohttp import web

from orchestrator import views
from orchestrator.docs import setup_docs


def setup_routes(app: web.Application) -> None:
    app.router.add_post("/api/coupons", views.create_coupon)
    app.router.add_post("/api/coupons/claim", views.claim_coupon)
    # Any name without "/" (the default pattern would also refuse "{" and "}").
    app.router.add_get("/api/coupons/{name:[^/]+}", views.get_coupon)
    app.router.add_get("/health", views.health)
    app.router.add_get("/ready", views.ready)
    app.router.add_get("/metrics", views.metrics)
    app.router.add_get("/openapi.json", views.openapi)
    setup_docs(app)  # a page for people, left out of /openapi.json (it is not the API)
