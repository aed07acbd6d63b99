"""The one place that maps outcomes to the contract's status codes and error bodies."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from pydantic import ValidationError

from orchestrator.responses import error_response
from sagas.errors import (
    AlreadyClaimed,
    CouponExists,
    CouponNotFound,
    LeaseLost,
    OutOfStock,
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


DOMAIN_ERRORS: dict[type[Exception], tuple[int, str, str]] = {
    CouponNotFound: (404, "coupon_not_found", "No coupon has that name."),
    CouponExists: (409, "coupon_exists", "A coupon with that name already exists."),
    AlreadyClaimed: (409, "already_claimed", "This user already holds this coupon."),
    OutOfStock: (409, "out_of_stock", "This coupon has no stock left."),
}

HTTP_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request", "The request could not be read."),
    404: ("not_found", "There is nothing at this path."),
    405: ("method_not_allowed", "This path does not accept that method."),
    413: ("payload_too_large", "The request body is too large."),
    417: ("expectation_failed", "The only expectation understood is 100-continue."),
}

# nginx's "client closed request": never sent (nobody is listening), but counted in
# http_requests_total as what it is, neither a success nor a failure of ours.
CLIENT_CLOSED_REQUEST = 499

RETRY_AFTER_SECONDS = "1"


def _validation_message(error: ValidationError) -> str:
    first = error.errors(include_url=False, include_input=False)[0]
    if not first["loc"]:
        return "The body must be a JSON object."
    field = ".".join(str(part) for part in first["loc"])
    reason = first["msg"].removeprefix("Value error, ")
    return f"Invalid field '{field}': {reason[0].lower()}{reason[1:]}."


def at_capacity_response() -> web.Response:
    return error_response(
        503,
        "unavailable",
        "The service is at capacity; try again shortly.",
        headers={"Retry-After": RETRY_AFTER_SECONDS},
    )


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ValidationError as error:
        return error_response(400, "invalid_request", _validation_message(error))
    except InvalidRequest as error:
        return error_response(400, "invalid_request", str(error))
    except BodyTimeout:
        response = error_response(408, "request_timeout", "The request body came too slowly.")
        response.force_close()  # the rest of the body may still be on its way
        return response
    except ClientGone:
        log.info("%s %s: the client hung up before its body arrived", request.method, request.path)
        return error_response(
            CLIENT_CLOSED_REQUEST, "client_closed_request", "The client closed the connection."
        )
    except Unauthorized:
        return error_response(
            401,
            "unauthorized",
            "This request needs a valid bearer token.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    except AtCapacity:
        return at_capacity_response()
    except (StoreUnavailable, LeaseLost) as error:
        log.warning("%s %s: %s", request.method, request.path, error)
        return error_response(
            503,
            "unavailable",
            "A data store is unavailable; try again shortly.",
            headers={"Retry-After": RETRY_AFTER_SECONDS},
        )
    except web.HTTPException as error:
        code, message = HTTP_ERRORS.get(error.status, ("internal", error.reason))
        headers = {"Allow": error.headers["Allow"]} if "Allow" in error.headers else None
        return error_response(error.status, code, message, headers=headers)
    except tuple(DOMAIN_ERRORS) as error:
        status, code, message = DOMAIN_ERRORS[type(error)]
        return error_response(status, code, message)
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return error_response(500, "internal", "The server failed to handle this request.")
