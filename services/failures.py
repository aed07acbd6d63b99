"""The one list of store errors that are transient: they become StoreUnavailable (HTTP 503)."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg
import pymongo.errors
import redis.exceptions

from sagas.errors import StoreUnavailable

_TRANSIENT: dict[str, tuple[type[BaseException], ...]] = {
    "postgresql": (
        OSError,
        TimeoutError,
        asyncpg.PostgresConnectionError,
        asyncpg.InterfaceError,
        asyncpg.CannotConnectNowError,
        asyncpg.TooManyConnectionsError,
        asyncpg.OperatorInterventionError,  # admin shutdown, crash shutdown
        asyncpg.DeadlockDetectedError,
        asyncpg.SerializationError,
    ),
    "mongodb": (
        OSError,
        TimeoutError,
        pymongo.errors.ConnectionFailure,  # AutoReconnect, NetworkTimeout, server selection
        pymongo.errors.ExecutionTimeout,
        pymongo.errors.WTimeoutError,
        # A long read's cursor was dropped by the server (seen under overload): read again.
        pymongo.errors.CursorNotFound,
    ),
    "redis": (
        OSError,
        TimeoutError,
        redis.exceptions.ConnectionError,
        redis.exceptions.TimeoutError,
    ),
}


# asyncpg's protocol refusing to start an operation on a connection whose last one never
# finished: the server ended the session under it (a fast shutdown or a restart sends a
# FATAL error, then closes) and the pool handed the connection out before it saw the close.
# Raised before anything is written, so nothing reached the server. Matched narrowly: any
# other InternalClientError is a bug in the driver or in us, and stays a 500.
_DEAD_CONNECTION = re.compile(
    r"cannot switch to state \d+; another operation \(\d+\) is in progress"
)


def _on_dead_connection(error: BaseException) -> bool:
    return isinstance(error, asyncpg.InternalClientError) and bool(
        _DEAD_CONNECTION.fullmatch(str(error))
    )


def _never_sent(error: BaseException) -> bool:
    """True when no connection was made, so the request cannot have reached the server."""
    if isinstance(error, pymongo.errors.ServerSelectionTimeoutError):
        return True
    if isinstance(error, pymongo.errors.PyMongoError) and error.has_error_label(
        "NoWritesPerformed"
    ):
        return True
    cause: BaseException | None = error
    while cause is not None:
        if _on_dead_connection(cause):
            return True
        if isinstance(
            cause,
            (
                ConnectionRefusedError,
                socket.gaierror,
                asyncpg.CannotConnectNowError,
                asyncpg.TooManyConnectionsError,
            ),
        ):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def _is_transient(store: str, error: BaseException) -> bool:
    if isinstance(error, _TRANSIENT[store]):
        return True
    if store == "postgresql" and _on_dead_connection(error):
        return True
    # PyMongo marks client-side operation timeouts (timeoutMS) on the error itself.
    return isinstance(error, pymongo.errors.PyMongoError) and error.timeout


@contextmanager
def unavailable_on_failure(store: str) -> Iterator[None]:
    """Turn a transient driver error of `store` into StoreUnavailable; let others through."""
    try:
        yield
    except asyncio.CancelledError:
        raise
    except Exception as error:
        if _is_transient(store, error):
            raise StoreUnavailable(store, maybe_applied=not _never_sent(error)) from error
        raise
