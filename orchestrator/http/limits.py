"""What one client may make a worker hold: a body (size, time, nesting), a request slot,
and the right to create coupons. Each limit is a setting (docs/OPERATING.md, "Hostile clients")."""

from __future__ import annotations

import asyncio
import hmac
from typing import Any

import orjson
from aiohttp import hdrs, web
from aiohttp.http import HttpVersion11

from orchestrator.http.errors import (
    AtCapacity,
    BodyTimeout,
    ClientGone,
    Handler,
    InvalidRequest,
    Unauthorized,
    answer_for,
)
from orchestrator.http.keys import SETTINGS

IN_PROGRESS = web.AppKey("requests_in_progress", list[int])
_NEVER_REFUSED = frozenset({"/health", "/metrics"})


async def read_json_body(request: web.Request) -> Any:
    """The body as JSON whatever the Content-Type says (the contract does not promise one).

    Too large: 413 (aiohttp stops reading at the size limit). Too slow: 408. Not JSON, not
    decodable as its Content-Encoding says, or nested deeper than the limit: 400. The
    client hanging up before its body arrived: ClientGone.
    """
    settings = request.app[SETTINGS]
    try:
        async with asyncio.timeout(settings.body_timeout_seconds):
            body = await request.read()
    except TimeoutError:
        raise BodyTimeout from None
    except web.RequestPayloadError:  # not decodable as its Content-Encoding says, bad chunks
        raise InvalidRequest("The body could not be decoded as it was sent.") from None
    except ConnectionResetError:  # what aiohttp sets on the body when the connection is lost
        raise ClientGone from None
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidRequest("The body is not valid JSON.") from None
    if _depth(value) > settings.max_json_depth:
        raise InvalidRequest("The body is nested too deeply.")
    return value


async def expect_continue(request: web.Request) -> None:
    """Answer `Expect: 100-continue`: continue only for a body within the size limit; past
    it, 413 at once, before the client sends it. Any other expectation: 417.

    Every route's expect handler: it runs before any middleware, so what it raises is
    answered in JSON by orchestrator/http/framing.py.
    """
    if request.version != HttpVersion11:
        return  # HTTP/1.0 has no expectations
    if request.headers.get(hdrs.EXPECT, "").lower() != "100-continue":
        raise web.HTTPExpectationFailed()
    max_size = request.app[SETTINGS].max_body_bytes
    length = request.content_length
    if length is not None and length > max_size:
        raise web.HTTPRequestEntityTooLarge(max_size=max_size, actual_size=length)
    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    request.writer.output_size = 0  # the interim answer is not the response's body


def _depth(value: Any) -> int:
    """Nesting depth of a parsed JSON value, without recursion (orjson allows 1024)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(node, dict):
            stack.extend((child, depth + 1) for child in node.values())
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node)
    return deepest


def require_admin(request: web.Request) -> None:
    """When ADMIN_TOKEN is set, the request must carry it as a bearer token."""
    token = request.app[SETTINGS].admin_token
    if token is None:
        return
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    expected = token.get_secret_value().encode()
    # Constant time: how much of a guess matched must not show in how long the answer takes.
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
        raise Unauthorized


@web.middleware
async def concurrency_limit_middleware(
    request: web.Request, handler: Handler
) -> web.StreamResponse:
    """Past MAX_CONCURRENT_REQUESTS in this process, answer 503 at once.

    Liveness and metrics are never refused: a busy gateway is not a dead one.
    """
    if request.path in _NEVER_REFUSED:
        return await handler(request)
    in_progress = request.app[IN_PROGRESS]
    if in_progress[0] >= request.app[SETTINGS].max_concurrent_requests:
        return answer_for(AtCapacity()).response()
    in_progress[0] += 1
    try:
        return await handler(request)
    finally:
        in_progress[0] -= 1
