"""The OpenAPI 3.1 description of the gateway, built from the models the handlers use.

The request and response schemas come from orchestrator/http/models.py and the error codes
from the one error mapping (orchestrator/http/errors.py), so the description cannot drift
from what the service does.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import version
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from orchestrator.http.errors import (
    BodyTimeout,
    ErrorAnswer,
    Unauthorized,
    entry,
)
from orchestrator.http.models import (
    ClaimRequest,
    ClaimResponse,
    CouponResponse,
    CreateCouponRequest,
    ErrorResponse,
)
from sagas.errors import (
    AlreadyClaimed,
    CouponExists,
    CouponNotFound,
    InDoubt,
    OutOfStock,
    StoreUnavailable,
)

_REF = "#/components/schemas/{model}"
ADMIN_SCHEME = "adminToken"
_REQUEST_ID = {
    "description": "The client's X-Request-Id when it is a sane token (letters, digits, "
    "`._:-`, at most 128), otherwise one made up; every log line about the request has it.",
    "required": True,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"},
}
_SAGA_ID = {
    "description": "The claim saga's id, for `coupon-saga show`. Always on a 200; on a "
    "409 or 503 when a saga was started for the claim (an answer from the sold-out memo "
    "or the admission queue started none).",
    "schema": {"type": "string", "format": "uuid"},
}


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": _REF.format(model=model.__name__)}


def _json(model: type[BaseModel], description: str, **extra: Any) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": _ref(model)}},
        **extra,
    }


def _errors(*kinds: type[BaseException]) -> dict[str, Any]:
    """Error responses by status, each listing the codes it may carry as examples."""
    by_status: dict[str, list[ErrorAnswer]] = {}
    for kind in kinds:
        answer = entry(kind)
        by_status.setdefault(str(answer.status), []).append(answer)
    responses: dict[str, Any] = {}
    for http_status, answers in by_status.items():
        examples = {
            "_".join((a.code, *map(str, a.extra.values()))): {
                "value": {"error": a.code, "message": a.message, **a.extra}
            }
            for a in answers
        }
        response = _json(ErrorResponse, " or ".join(map(_described, answers)))
        response["content"]["application/json"]["examples"] = examples
        headers = {name for answer in answers for name in answer.headers}
        if headers:
            response["headers"] = {name: {"schema": {"type": "string"}} for name in sorted(headers)}
        responses[http_status] = response
    return responses


def _described(answer: ErrorAnswer) -> str:
    """An answer's code, and the fields it adds to the error body."""
    added = ", ".join(f"`{name}: {value}`" for name, value in answer.extra.items())
    return f"`{answer.code}`" + (f" with {added}" if added else "")


_BAD_BODY = (
    web.HTTPBadRequest,
    BodyTimeout,
    web.HTTPRequestEntityTooLarge,
    web.HTTPExpectationFailed,  # an Expect header other than 100-continue
    StoreUnavailable,
)


_NAME_PARAMETER = {
    "name": "name",
    "in": "path",
    "required": True,
    "description": "The coupon's name, percent-encoded.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 128},
    "example": "PROMO_SUPER",
}


def _operations() -> dict[str, Any]:
    return {
        "/api/coupons": {"post": _create_coupon()},
        "/api/coupons/claim": {"post": _claim_coupon()},
        "/api/coupons/{name}": {"get": _get_coupon()},
        "/health": {"get": _probe("getHealth", "200 while the process runs")},
        "/ready": {"get": _ready()},
        "/metrics": {"get": _metrics()},
        "/openapi.json": {"get": _probe("getOpenApi", "This description")},
    }


def _create_coupon() -> dict[str, Any]:
    return {
        "operationId": "createCoupon",
        "summary": "Create a coupon with its stock",
        "description": "When the service runs with ADMIN_TOKEN set, this needs "
        "`Authorization: Bearer <token>` (401 otherwise).",
        # The token, or none at all when the service runs without ADMIN_TOKEN.
        "security": [{ADMIN_SCHEME: []}, {}],
        "requestBody": {"required": True, "content": _body(CreateCouponRequest)},
        "responses": {
            "201": _json(
                CouponResponse,
                "Created",
                headers={"Location": {"schema": {"type": "string"}}},
            ),
            **_errors(*_BAD_BODY, Unauthorized, CouponExists),
        },
    }


def _claim_coupon() -> dict[str, Any]:
    return {
        "operationId": "claimCoupon",
        "summary": "Claim one unit of a coupon for a user, all or nothing",
        "requestBody": {"required": True, "content": _body(ClaimRequest)},
        "responses": {
            "200": _json(
                ClaimResponse,
                "Claimed",
                headers={"X-Saga-Id": {**_SAGA_ID, "required": True}},
            ),
            **_errors(*_BAD_BODY, CouponNotFound, AlreadyClaimed, OutOfStock, InDoubt),
        },
    }


def _get_coupon() -> dict[str, Any]:
    return {
        "operationId": "getCoupon",
        "summary": "A coupon's stock and the users who claimed it",
        "parameters": [_NAME_PARAMETER],
        "responses": {
            "200": _json(CouponResponse, "The coupon"),
            **_errors(CouponNotFound, StoreUnavailable),
        },
    }


def _ready() -> dict[str, Any]:
    return {
        **_probe("getReady", "200 when PostgreSQL, MongoDB and Redis all answer"),
        "responses": {
            "200": _object("Every store answers"),
            "503": _object("Not ready: the body names the stores that do not answer"),
        },
    }


def _metrics() -> dict[str, Any]:
    return {
        "operationId": "getMetrics",
        "summary": "Prometheus metrics, all worker processes added up",
        "responses": {
            "200": {
                "description": "Prometheus text format",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        },
    }


def _body(model: type[BaseModel]) -> dict[str, Any]:
    examples = model.model_json_schema().get("examples")
    content: dict[str, Any] = {"schema": _ref(model)}
    if examples:
        content["example"] = examples[0]
    return {"application/json": content}


def _object(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"type": "object"}}},
    }


def _probe(operation_id: str, summary: str) -> dict[str, Any]:
    return {
        "operationId": operation_id,
        "summary": summary,
        "responses": {"200": _object(summary)},
    }


def _with_headers(paths: dict[str, Any]) -> dict[str, Any]:
    """X-Request-Id on every answer; X-Saga-Id on every answer to a claim."""
    for path, operations in paths.items():
        for operation in operations.values():
            for response in operation["responses"].values():
                headers = response.setdefault("headers", {})
                headers["X-Request-Id"] = _REQUEST_ID
                if path == "/api/coupons/claim":
                    headers.setdefault("X-Saga-Id", _SAGA_ID)
    return paths


@cache
def openapi_document() -> dict[str, Any]:
    models: list[type[BaseModel]] = [
        CreateCouponRequest,
        ClaimRequest,
        CouponResponse,
        ClaimResponse,
        ErrorResponse,
    ]
    _, schemas = models_json_schema([(model, "validation") for model in models], ref_template=_REF)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Coupon service",
            "version": version("coupon-service"),
            "description": "Flash-sale coupons: create, claim (a saga across PostgreSQL, "
            "MongoDB and Redis) and read. Every response body is JSON except /metrics; "
            "every error is {error, message}. A page to read this description is at /docs.",
        },
        "paths": _with_headers(_operations()),
        "components": {
            "schemas": schemas["$defs"],
            "securitySchemes": {
                ADMIN_SCHEME: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The service's ADMIN_TOKEN, needed to create coupons "
                    "when it is set.",
                }
            },
        },
    }
