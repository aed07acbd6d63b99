"""JSON for the errors aiohttp answers itself: a request it cannot parse as HTTP, and an
`Expect` header it refuses.

Such a request (a head past the header limits, broken framing, a bad method) never
reaches a route or a middleware; aiohttp's protocol handler answers it directly, in
plain text. So does an error raised by a route's expect handler, which runs before the
middlewares (417 for an unknown expectation, 413 for a body announced too large). The
contract says every response body is JSON, so the gateway's servers make their protocol
handlers from this subclass, which answers in the contract's shape.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web, web_protocol, web_server
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

from orchestrator.http.errors import answer_for_status


class JsonErrorRequestHandler(web_protocol.RequestHandler):
    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> StreamResponse:
        # The parent logs the error and refuses if a response has begun; its text is dropped.
        super().handle_error(request, status, exc, message)
        return _json_error(status)

    async def finish_response(
        self, request: BaseRequest, resp: StreamResponse, start_time: float | None
    ) -> tuple[StreamResponse, bool]:
        # Inside the middlewares every HTTPException is answered already; one that gets here
        # was raised before them (an expect handler). Its body may not have been read.
        if isinstance(resp, web.HTTPException):
            resp = _json_error(resp.status)
        return await super().finish_response(request, resp, start_time)


def _json_error(status: int) -> web.Response:
    response = answer_for_status(status).response()
    response.force_close()
    return response


def answer_framing_errors_in_json() -> None:
    """Make every aiohttp server in this process use the JSON-answering handler."""
    web_server.RequestHandler = JsonErrorRequestHandler  # type: ignore[attr-defined]
