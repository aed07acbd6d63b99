"""What a console request asks for: the console's ports, a filter, a saga id."""

from __future__ import annotations

import uuid

from aiohttp import web

from orchestrator.console.reads import Console
from orchestrator.http.keys import CONSOLE
from sagas.operations import Refused


def console_of(request: web.Request) -> Console:
    return request.app[CONSOLE]


def text_in(request: web.Request, name: str) -> str | None:
    """A filter from the query string: None when absent or blank."""
    value = request.query.get(name, "")
    return value if value.strip() else None


def saga_id_in(raw: str) -> str:
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise Refused("not_found", f"not a saga id (a UUID): {raw!r}") from None
