"""The one list of store errors that are transient: they become StoreUnavailable (HTTP 503).

And the few that say a store is not set up for us (no such database, a refused role):
they become StoreNotSetUp, with what to do, since waiting will not help."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg
import pymongo.errors
import redis.exceptions

from sagas.errors import StoreNotSetUp, StoreUnavailable
from services.live_connections import session_ended_by_server

_TRANSIENT: dict[str, tuple[type[BaseException], ...]] = {
    "postgresql": (
        OSError,
        TimeoutError,
        asyncpg.PostgresConnectionError,
        asyncpg.InterfaceError,
        asyncpg.CannotConnectNowError,
        asyncpg.TooManyConnectionsError,
        asyncpg.OperatorInterventionError,  # admin shutdown, crash shutdown, a cancel
        asyncpg.InsufficientResourcesError,  # disk full, out of memory, too many connections
        asyncpg.PostgresSystemError,  # an I/O error on the server
        # The old primary of a failover, a replica now: the next connection may reach the
        # new one.
        asyncpg.ReadOnlySQLTransactionError,
        # Every host of a multi-host DATABASE_URL answered and none is read-write: a
        # failover between the old primary's fencing and the new one's promotion.
        asyncpg.TargetServerAttributeNotMatched,
        asyncpg.LockNotAvailableError,  # an operator's lock_timeout
        asyncpg.DeadlockDetectedError,
        asyncpg.SerializationError,
        # A named statement on another server connection: behind a transaction pooler
        # without PG_POOLER=transaction. Refused before it ran; the next try may land
        # where the statement is.
        asyncpg.InvalidSQLStatementNameError,
        asyncpg.DuplicatePreparedStatementError,
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
        # At maxmemory under noeviction Redis refuses every write (scripts too) until
        # memory frees: the log is unavailable, not broken.
        redis.exceptions.OutOfMemoryError,
        redis.exceptions.ReadOnlyError,  # a replica now, after a failover
        # A replica cut off from its master (replica-serve-stale-data no): a failover.
        redis.exceptions.MasterDownError,
    ),
}


def _setup_advice(error: BaseException) -> str | None:
    """What an operator must change, for an error that says the store is not set up for us."""
    if isinstance(error, asyncpg.InvalidCatalogNameError):
        return f"{error}: create it (createdb) or point DATABASE_URL at the right database"
    if isinstance(
        error, (asyncpg.InvalidAuthorizationSpecificationError, asyncpg.InsufficientPrivilegeError)
    ):
        return f"{error}: fix the user or password in DATABASE_URL, or grant the role access"
    if isinstance(error, pymongo.errors.OperationFailure) and error.code in (13, 18):
        return f"{error}: fix the user or password in MONGO_URL, or grant the user access"
    if isinstance(error, redis.exceptions.AuthenticationError):
        return f"{error}: fix the user or password in REDIS_URL"
    if isinstance(error, redis.exceptions.NoPermissionError):
        return f"{error}: let the user in REDIS_URL run the service's commands (ACL SETUSER)"
    return None


_REFUSED = (
    ConnectionRefusedError,
    socket.gaierror,
    asyncpg.TargetServerAttributeNotMatched,  # each host's connection closed unused
    # Sent, but refused whole: a read-only node runs no write of the statement, and its
    # transaction rolls back.
    asyncpg.ReadOnlySQLTransactionError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
)


def _pymongo_wait_cut_short(error: BaseException) -> bool:
    """PyMongo's asyncio condition (waiting for a server or a pooled connection) raising
    this when a timeout cut the wait short at the wrong moment: seen while FerretDB was
    down on a busy machine. The store was not answering; matched exactly, so any other
    RuntimeError stays a bug."""
    return type(error) is RuntimeError and str(error) == "cannot wait on un-acquired lock"


# MongoDB's InternalError: the server failed inside. FerretDB answers so when its PostgreSQL
# refuses a statement — v1.24.2, restarted under load, can lose its catalogue and answer
# every write so ("relation ... already exists") until it is restarted again. A store in
# trouble (503), not a bug of ours (500).
_MONGODB_INTERNAL_ERROR = 1


def _mongodb_failed_inside(error: BaseException) -> bool:
    return (
        isinstance(error, pymongo.errors.OperationFailure) and error.code == _MONGODB_INTERNAL_ERROR
    )


def _never_sent(error: BaseException) -> bool:
    """True when no connection was made, so the request cannot have reached the server (or
    when the server refused it whole)."""
    if isinstance(error, pymongo.errors.PyMongoError):
        # Only what the error says of itself: a retried write re-raises its first error
        # `from` the retry's, so a refusal down the chain may be the retry's, not the try
        # that was sent.
        return (
            isinstance(error, pymongo.errors.ServerSelectionTimeoutError)
            or error.has_error_label("NoWritesPerformed")
            or isinstance(error.__cause__, _REFUSED)
        )
    cause: BaseException | None = error
    while cause is not None:
        if session_ended_by_server(cause) or isinstance(cause, _REFUSED):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


# Redis refusing writes because its last snapshot failed (stop-writes-on-bgsave-error),
# or because fewer replicas are in reach than its min-replicas-to-write asks (a
# failover, a replica away): both may pass. redis-py has no class of its own for them;
# the code leads the message (a pipeline that raises puts "... caused error: " before it).
_CANNOT_PERSIST = re.compile(r"(?:^|error: )(?:MISCONF|NOREPLICAS)\b")


def _is_transient(store: str, error: BaseException) -> bool:
    if isinstance(error, _TRANSIENT[store]):
        return True
    # A statement asyncpg refused on a connection whose session PostgreSQL had already
    # ended: nothing was sent. The inventory runs it again on another connection
    # (services/live_connections.py); it gets here only when the server ends sessions as
    # fast as the pool opens them, or from a call made on the pool directly (the start-up
    # checks). Any other InternalClientError is a bug in the driver or in us: a 500.
    if store == "postgresql" and session_ended_by_server(error):
        return True
    if store == "redis" and isinstance(error, redis.exceptions.ResponseError):
        return bool(_CANNOT_PERSIST.search(str(error)))
    if store == "mongodb" and (_pymongo_wait_cut_short(error) or _mongodb_failed_inside(error)):
        return True
    # PyMongo marks client-side operation timeouts (timeoutMS) on the error itself.
    return isinstance(error, pymongo.errors.PyMongoError) and error.timeout


@contextmanager
def unavailable_on_failure(store: str) -> Iterator[None]:
    """Turn a transient driver error of `store` into StoreUnavailable, one that says the
    store is not set up for us into StoreNotSetUp; let others through."""
    try:
        yield
    except asyncio.CancelledError:
        raise
    except Exception as error:
        if advice := _setup_advice(error):
            raise StoreNotSetUp(store, advice) from error
        if _is_transient(store, error):
            raise StoreUnavailable(store, maybe_applied=not _never_sent(error)) from error
        raise


def classified(store: str, error: Exception) -> Exception:
    """The error a single call would raise for `error`: what `unavailable_on_failure`
    makes of it. For one item of a batch whose driver reported it apart."""
    try:
        with unavailable_on_failure(store):
            raise error
    except Exception as mapped:
        return mapped
