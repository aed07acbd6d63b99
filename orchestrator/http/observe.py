"""The outermost middleware: a request id for every request, and its metrics.

The id comes from the client's `X-Request-Id` when it is a sane token (so a caller can
follow its request through our logs) and is made here otherwise; it is echoed back and
put on every log line written while the request is served.
"""

from __future__ import annotations

import logging
import os
import re
import time

from aiohttp import web

from orchestrator.http.errors import Handler
from orchestrator.logs import REQUEST_ID, SAGA_ID
from orchestrator.metrics import HTTP_LATENCY, HTTP_REQUESTS
from orchestrator.process.shutdown import draining

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-Id"
SAGA_ID_HEADER = "X-Saga-Id"
_SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def _request_id(request: web.Request) -> str:
    given = request.headers.get(REQUEST_ID_HEADER, "")
    return given if _SANE_ID.fullmatch(given) else os.urandom(16).hex()


def _route(request: web.Request) -> str:
    """The route's pattern, never the raw path: one label value per route, not per name."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def observe_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    request_id = _request_id(request)
    REQUEST_ID.set(request_id)
    SAGA_ID.set("")  # requests on one keep-alive connection share a context
    started = time.perf_counter()
    response = await handler(request)
    elapsed = time.perf_counter() - started
    route = _route(request)
    HTTP_REQUESTS.labels(request.method, route, str(response.status)).inc()
    HTTP_LATENCY.labels(request.method, route).observe(elapsed)
    response.headers[REQUEST_ID_HEADER] = request_id
    if (saga_id := SAGA_ID.get()) and SAGA_ID_HEADER not in response.headers:
        response.headers[SAGA_ID_HEADER] = saga_id  # also on a 409 or a 503: ask the replay tool
    if draining(request.app):
        response.force_close()  # the client's next request goes to a gateway that stays
    if log.isEnabledFor(logging.DEBUG):
        log.debug("%s %s %d %.1fms", request.method, request.path, response.status, elapsed * 1e3)
    return response
