"""HTTP views: parse into a model, call the service, serialize. Errors go to the middleware."""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web

from orchestrator.http.errors import NotReady
from orchestrator.http.keys import COUPONS
from orchestrator.http.limits import read_json_body, require_admin
from orchestrator.http.models import (
    ClaimRequest,
    ClaimResponse,
    CouponResponse,
    CreateCouponRequest,
    coupon_name_in_path,
)
from orchestrator.http.openapi import openapi_document
from orchestrator.http.readiness import store_status
from orchestrator.http.responses import json_response, plain_json_response
from orchestrator.metrics import exposition
from orchestrator.process.shutdown import draining
from sagas.timestamps import rfc3339


async def create_coupon(request: web.Request) -> web.Response:
    require_admin(request)
    command = CreateCouponRequest.model_validate(await read_json_body(request))
    stock = await request.app[COUPONS].create(command.name, command.amount)
    body = CouponResponse(
        name=stock.name, amount=stock.amount, remaining_amount=stock.remaining_amount, claimed_by=[]
    )
    return json_response(
        body, status=201, headers={"Location": f"/api/coupons/{quote(stock.name, safe='')}"}
    )


async def claim_coupon(request: web.Request) -> web.Response:
    command = ClaimRequest.model_validate(await read_json_body(request))
    claimed = await request.app[COUPONS].claim(command.user_id, command.coupon_name)
    body = ClaimResponse(
        user_id=claimed.user_id,
        coupon_name=claimed.coupon_name,
        claimed_at=rfc3339(claimed.claimed_at),
    )
    return json_response(body, headers={"X-Saga-Id": claimed.saga_id})


async def get_coupon(request: web.Request) -> web.Response:
    name = coupon_name_in_path(request.match_info["name"])
    details = await request.app[COUPONS].details(name)
    stock = details.stock
    body = CouponResponse(
        name=stock.name,
        amount=stock.amount,
        remaining_amount=stock.remaining_amount,
        claimed_by=details.claimed_by,
    )
    return json_response(body)


async def health(request: web.Request) -> web.Response:
    return plain_json_response({"status": "ok"})


async def ready(request: web.Request) -> web.Response:
    """200 when every store answers; 503 naming the ones that do not, or while stopping."""
    if draining(request.app):
        raise NotReady("Shutting down.")
    status = await store_status(request.app)
    stores = {name: "ok" if up else "unavailable" for name, up in status.items()}
    down = [name for name, up in status.items() if not up]
    if down:
        verb = "does" if len(down) == 1 else "do"
        raise NotReady(f"Not ready: {', '.join(down)} {verb} not answer.", stores)
    return plain_json_response({"status": "ready", "stores": stores})


async def openapi(request: web.Request) -> web.Response:
    return plain_json_response(openapi_document())


async def metrics(request: web.Request) -> web.Response:
    body, content_type = exposition()
    return web.Response(body=body, headers={"Content-Type": content_type})
