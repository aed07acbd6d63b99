"""JSON responses: every body is JSON with an explicit UTF-8 charset."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web
from pydantic import BaseModel

from orchestrator.models import ErrorResponse


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
    status: int, code: str, message: str, *, headers: Mapping[str, str] | None = None
) -> web.Response:
    return json_response(ErrorResponse(error=code, message=message), status=status, headers=headers)
