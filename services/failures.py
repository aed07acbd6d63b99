"""The one list of store errors that are transient: they become StoreUnavailable (HTTP 503)."""

from __future__ import annotations

import asyncio
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


def _pymongo_wait_cut_short(error: BaseException) -> bool:
    """PyMongo's asyncio condition (waiting for a server or a pooled connection) raising
    this when a timeout cut the wait short at the wrong moment: seen while FerretDB was
    down on a busy machine. The store was not answering; matched exactly, so any other
    RuntimeError stays a bug."""
    return type(error) is RuntimeError and str(error) == "cannot wait on un-acquired lock"


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
    if store == "mongodb" and _pymongo_wait_cut_short(error):
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
