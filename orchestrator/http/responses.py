"""JSON responses: every body is JSON with an explicit UTF-8 charset."""

from __future__ import annotations

from collections.abc import Mapping

import orjson
from aiohttp import web
from pydantic import BaseModel

from orchestrator.http.models import ErrorResponse


def json_response(
    model: BaseModel, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=model.__pydantic_serializer__.to_json(model),
        status=status,
        headers=headers,
        content_type="application/json",
        charset="utf-8",
    )


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, object] | None = None,
) -> web.Response:
    """The contract's error body; `extra` adds fields after the two it always has."""
    body = ErrorResponse(error=code, message=message)
    if not extra:
        return json_response(body, status=status, headers=headers)
    return plain_json_response({**body.model_dump(), **extra}, status=status, headers=headers)


def plain_json_response(
    value: object, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """A body that has no model (probes, the OpenAPI document)."""
    return web.Response(
        body=orjson.dumps(value),
        status=status,
        headers=headers,
        content_type="application/json",
        charset="utf-8",
    )
