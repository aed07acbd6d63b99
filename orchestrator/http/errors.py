"""The one table from an error to the contract's answer: status, code, message, headers.

The error middleware, the framing handler (errors aiohttp answers itself), the limits and
the readiness probe answer from it, and the OpenAPI description lists it; an error is
looked up by its class and then its bases, so a subclass answers like its parent.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from orchestrator.http.responses import error_response
from sagas.errors import (
    AlreadyClaimed,
    CouponExists,
    CouponNotFound,
    InDoubt,
    LeaseLost,
    OutOfStock,
    StoreNotSetUp,
    StoreUnavailable,
)

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class InvalidRequest(Exception):
    """The body or a field breaks the contract; the message is safe to show the client."""


class BodyTimeout(Exception):
    """The client did not send its whole body within the body timeout."""


class ClientGone(Exception):
    """The client closed its connection before its whole body arrived."""


class Unauthorized(Exception):
    """A write that needs the admin token came without it (or with another one)."""


class AtCapacity(Exception):
    """No saga slot came free in time; nothing was started for this claim."""


class NotReady(Exception):
    """/ready: a store does not answer, or the process is stopping."""

    def __init__(self, message: str, stores: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.stores = stores


# nginx's "client closed request": never sent (nobody is listening), but counted in
# http_requests_total as what it is, neither a success nor a failure of ours.
CLIENT_CLOSED_REQUEST = 499

RETRY_AFTER = {"Retry-After": "1"}


@dataclass(frozen=True)
class ErrorAnswer:
    """The contract's answer to one kind of error, and how it is logged."""

    status: int
    code: str
    message: str
    headers: Mapping[str, str] = field(default_factory=dict)
    extra: Mapping[str, object] = field(default_factory=dict)  # more body fields
    close: bool = False  # drop the connection: the rest of the request may be on its way
    log_level: int | None = None
    log_text: str | None = None  # the log line's text; the error's own when None
    # The parts taken from the error itself (its message, its Allow header, ...).
    from_error: Callable[[Any, ErrorAnswer], ErrorAnswer] | None = None

    def for_error(self, error: BaseException) -> ErrorAnswer:
        return self if self.from_error is None else self.from_error(error, self)

    def response(self) -> web.Response:
        response = error_response(
            self.status, self.code, self.message, headers=self.headers or None, extra=self.extra
        )
        if self.close:
            response.force_close()
        return response


def _validation_message(error: ValidationError) -> str:
    first = error.errors(include_url=False, include_input=False)[0]
    if not first["loc"]:
        return "The body must be a JSON object."
    field = ".".join(str(part) for part in first["loc"])
    reason = first["msg"].removeprefix("Value error, ")
    return f"Invalid field '{field}': {reason[0].lower()}{reason[1:]}."


def _own_message(error: BaseException, answer: ErrorAnswer) -> ErrorAnswer:
    return replace(answer, message=str(error) or answer.message)


def _validation(error: ValidationError, answer: ErrorAnswer) -> ErrorAnswer:
    return replace(answer, message=_validation_message(error))


def _allowed_methods(error: web.HTTPException, answer: ErrorAnswer) -> ErrorAnswer:
    return replace(answer, headers={"Allow": error.headers["Allow"]})


def _any_http(error: web.HTTPException, answer: ErrorAnswer) -> ErrorAnswer:
    return replace(answer, status=error.status, message=error.reason)


def _not_ready(error: NotReady, answer: ErrorAnswer) -> ErrorAnswer:
    stores = {} if error.stores is None else {"stores": dict(error.stores)}
    return replace(answer, message=str(error), extra=stores)


_UNAVAILABLE = ErrorAnswer(
    503,
    "unavailable",
    "A data store is unavailable; try again shortly.",
    headers=RETRY_AFTER,
    log_level=logging.WARNING,
)
_READ_FAILED = ErrorAnswer(400, "invalid_request", "The request could not be read.")

ERRORS: dict[type[BaseException], ErrorAnswer] = {
    # The client's side: what it sent, how, and whether it may.
    ValidationError: replace(_READ_FAILED, from_error=_validation),
    InvalidRequest: replace(_READ_FAILED, from_error=_own_message),
    web.HTTPBadRequest: _READ_FAILED,
    BodyTimeout: ErrorAnswer(
        408, "request_timeout", "The request body came too slowly.", close=True
    ),
    ClientGone: ErrorAnswer(
        CLIENT_CLOSED_REQUEST,
        "client_closed_request",
        "The client closed the connection.",
        log_level=logging.INFO,
        log_text="the client hung up before its body arrived",
    ),
    Unauthorized: ErrorAnswer(
        401,
        "unauthorized",
        "This request needs a valid bearer token.",
        headers={"WWW-Authenticate": "Bearer"},
    ),
    web.HTTPNotFound: ErrorAnswer(404, "not_found", "There is nothing at this path."),
    web.HTTPMethodNotAllowed: ErrorAnswer(
        405,
        "method_not_allowed",
        "This path does not accept that method.",
        from_error=_allowed_methods,
    ),
    web.HTTPRequestEntityTooLarge: ErrorAnswer(
        413, "payload_too_large", "The request body is too large."
    ),
    web.HTTPExpectationFailed: ErrorAnswer(
        417, "expectation_failed", "The only expectation understood is 100-continue."
    ),
    # The domain's answers.
    CouponNotFound: ErrorAnswer(404, "coupon_not_found", "No coupon has that name."),
    CouponExists: ErrorAnswer(409, "coupon_exists", "A coupon with that name already exists."),
    AlreadyClaimed: ErrorAnswer(409, "already_claimed", "This user already holds this coupon."),
    OutOfStock: ErrorAnswer(409, "out_of_stock", "This coupon has no stock left."),
    # Ours: busy, a store away, not ready, or a bug.
    AtCapacity: ErrorAnswer(
        503,
        "unavailable",
        "The service is at capacity; try again shortly.",
        headers=RETRY_AFTER,
    ),
    StoreUnavailable: _UNAVAILABLE,
    # A store that refuses us (a role's rights, a password): nothing was taken, and the
    # line logged says what an operator must change.
    StoreNotSetUp: replace(_UNAVAILABLE, log_level=logging.ERROR),
    LeaseLost: _UNAVAILABLE,
    # A claim whose saga did not settle while the client waited: unlike the 503s above,
    # this one does not say that nothing was taken.
    InDoubt: ErrorAnswer(
        503,
        "unavailable",
        "The claim is not settled yet: it may still stand or be undone. Ask again "
        "shortly; a repeat gets the settled answer.",
        headers=RETRY_AFTER,
        extra={"outcome": "in_doubt"},
        log_level=logging.WARNING,
    ),
    NotReady: ErrorAnswer(
        503, "unavailable", "Not ready.", headers=RETRY_AFTER, from_error=_not_ready
    ),
    web.HTTPException: ErrorAnswer(500, "internal", "", from_error=_any_http),
    Exception: ErrorAnswer(
        500,
        "internal",
        "The server failed to handle this request.",
        log_level=logging.ERROR,
    ),
}


def answer_for(error: BaseException) -> ErrorAnswer:
    """The answer to an error: the table's entry for its class, or its nearest base's."""
    for kind in type(error).__mro__:
        if kind in ERRORS:
            return ERRORS[kind].for_error(error)
    return ERRORS[Exception].for_error(error)


def answer_for_status(status: int) -> ErrorAnswer:
    """The answer to an HTTP error aiohttp reports only by its status (framing, expect)."""
    for kind, answer in ERRORS.items():
        if issubclass(kind, web.HTTPException) and answer.status == status:
            return answer
    return replace(ERRORS[Exception], status=status)


def entry(kind: type[BaseException]) -> ErrorAnswer:
    """The table's answer for an error class, as documented (before the error's own parts)."""
    return ERRORS[kind]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Exception as error:
        answer = answer_for(error)
        if answer.log_level is not None:
            log.log(
                answer.log_level,
                "%s %s: %s",
                request.method,
                request.path,
                answer.log_text or error,
                exc_info=answer.log_level >= logging.ERROR,
            )
        return answer.response()
