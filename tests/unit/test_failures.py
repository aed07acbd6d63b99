"""Which store errors are transient (503, retried) and which are bugs (500, loud)."""

from __future__ import annotations

import asyncpg
import pymongo.errors
import pytest
import redis.exceptions

from sagas.errors import StoreUnavailable
from services.failures import unavailable_on_failure


@pytest.mark.parametrize(
    "error",
    [
        pymongo.errors.CursorNotFound("cursor id 1 not found", 43),
        pymongo.errors.NetworkTimeout("timed out"),
        pymongo.errors.ServerSelectionTimeoutError("no server"),
        ConnectionResetError(),
        # PyMongo's asyncio condition, cut short while it waits for a server (seen when
        # FerretDB was killed mid-sale on a busy machine: a 500).
        RuntimeError("cannot wait on un-acquired lock"),
        # The server failing inside: FerretDB 1.24 restarted under load, its catalogue
        # lost, refused every insert so (a 500 each, under stress-ng).
        pymongo.errors.OperationFailure(
            'ERROR: relation "_ferretdb_database_metadata" already exists (SQLSTATE 42P07)',
            1,
        ),
        pymongo.errors.WriteError("internal", 1),
    ],
    ids=lambda error: type(error).__name__,
)
def test_transient_mongodb_errors_become_store_unavailable(error):
    with pytest.raises(StoreUnavailable, match="mongodb"), unavailable_on_failure("mongodb"):
        raise error


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.DiskFullError("could not extend file"),
        asyncpg.OutOfMemoryError("out of memory"),
        asyncpg.PostgresIOError("could not read block"),
        asyncpg.LockNotAvailableError("canceling statement due to lock timeout"),
        asyncpg.QueryCanceledError("canceling statement due to statement timeout"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_a_postgresql_server_in_trouble_is_unavailable(error):
    """Its own trouble (disk, memory, I/O) or an operator's limits: not our bug."""
    with pytest.raises(StoreUnavailable, match="postgresql"), unavailable_on_failure("postgresql"):
        raise error


def test_a_redis_response_error_other_than_a_failed_snapshot_stays_what_it_is():
    with pytest.raises(redis.exceptions.ResponseError), unavailable_on_failure("redis"):
        raise redis.exceptions.ResponseError("WRONGTYPE Operation against a key")


def test_a_mongodb_refusal_other_than_an_internal_error_stays_what_it_is():
    with pytest.raises(pymongo.errors.OperationFailure), unavailable_on_failure("mongodb"):
        raise pymongo.errors.OperationFailure("unknown operator: $nope", 2)


def test_a_programming_error_stays_what_it_is():
    with pytest.raises(KeyError), unavailable_on_failure("mongodb"):
        raise KeyError("user_id")


def _raised(store: str, error: BaseException) -> StoreUnavailable:
    with pytest.raises(StoreUnavailable) as caught, unavailable_on_failure(store):
        raise error
    return caught.value


def _mongo_connection_failure(cause: OSError) -> pymongo.errors.AutoReconnect:
    """As PyMongo raises it: the socket error as its cause."""
    try:
        raise pymongo.errors.AutoReconnect(str(cause)) from cause
    except pymongo.errors.AutoReconnect as error:
        return error


def test_a_refused_connection_is_known_never_sent():
    refused = _mongo_connection_failure(ConnectionRefusedError(111, "refused"))

    assert _raised("mongodb", refused).maybe_applied is False


def test_a_retried_write_whose_retry_was_refused_may_have_applied():
    """PyMongo re-raises a retryable write's first error `from` the retry's error: the
    first try was sent (the connection dropped after), whatever the retry met."""
    first = _mongo_connection_failure(ConnectionResetError(104, "reset"))
    retry = _mongo_connection_failure(ConnectionRefusedError(111, "refused"))
    retry._add_error_label("NoWritesPerformed")
    first.__cause__ = retry

    assert _raised("mongodb", first).maybe_applied is True


def test_a_connection_postgresql_ended_under_the_pool_is_unavailable_and_nothing_was_sent():
    """What a fast shutdown, a restart or pg_terminate_backend leaves in the pool: the
    server's FATAL error read on an idle connection (state 2), not yet its close. asyncpg
    refuses to start the next operation on it, before writing anything."""
    dead = asyncpg.InternalClientError(
        "cannot switch to state 12; another operation (2) is in progress"
    )
    with pytest.raises(StoreUnavailable) as raised, unavailable_on_failure("postgresql"):
        raise dead
    assert raised.value.maybe_applied is False


@pytest.mark.parametrize(
    "message",
    [
        "unexpected data type of composite type attribute",
        # Another operation than an error being consumed: no server goodbye explains it.
        "cannot switch to state 12; another operation (3) is in progress",
    ],
)
def test_any_other_internal_client_error_stays_a_bug(message):
    with (
        pytest.raises(asyncpg.InternalClientError),
        unavailable_on_failure("postgresql"),
    ):
        raise asyncpg.InternalClientError(message)


def test_redis_at_maxmemory_is_unavailable_not_a_bug():
    """noeviction at maxmemory: Redis refuses writes (and scripts that write) until memory frees."""
    refused = redis.exceptions.OutOfMemoryError(
        "command not allowed when used memory > 'maxmemory'. script: 1f0e, on @user_script:8."
    )
    with pytest.raises(StoreUnavailable, match="redis"), unavailable_on_failure("redis"):
        raise refused


def test_another_runtime_error_stays_what_it_is():
    with pytest.raises(RuntimeError), unavailable_on_failure("mongodb"):
        raise RuntimeError("cannot wait on un-acquired lock, and something else")


def test_no_host_of_a_multi_host_url_being_the_primary_is_unavailable_and_nothing_was_sent():
    """asyncpg's answer, mid-failover, when every host of DATABASE_URL answers and none is
    read-write (the old primary fenced or demoted, the standby not promoted yet): it
    closed those connections before sending a statement."""
    no_primary = asyncpg.TargetServerAttributeNotMatched(
        "None of the hosts match the target attribute requirement "
        "<SessionAttribute.read_write: 'read-write'>"
    )
    with pytest.raises(StoreUnavailable) as raised, unavailable_on_failure("postgresql"):
        raise no_primary
    assert raised.value.maybe_applied is False


@pytest.mark.parametrize(
    "refused",
    [
        # min-replicas-to-write set on the master, and its replicas away (a failover).
        redis.exceptions.ResponseError("NOREPLICAS Not enough good replicas to write."),
        redis.exceptions.ResponseError(
            "Command # 1 (EVALSHA 1f0e ...) of pipeline caused error: NOREPLICAS Not enough "
            "good replicas to write. script: 1f0e, on @user_script:8."
        ),
        # A replica cut off from its master, with replica-serve-stale-data no.
        redis.exceptions.MasterDownError(
            "Link with MASTER is down and replica-serve-stale-data is set to 'no'."
        ),
    ],
    ids=["noreplicas", "noreplicas-in-a-pipeline", "masterdown"],
)
def test_redis_refusing_for_want_of_replicas_or_a_master_is_unavailable(refused):
    with pytest.raises(StoreUnavailable, match="redis"), unavailable_on_failure("redis"):
        raise refused


def test_a_write_a_read_only_node_refused_was_never_applied():
    """A standby or a fenced primary refuses the statement, whose transaction then rolls
    back whole: the claim took nothing, so it needs no undo (and gets a plain 503)."""
    refused = asyncpg.ReadOnlySQLTransactionError(
        "cannot execute INSERT in a read-only transaction"
    )

    assert _raised("postgresql", refused).maybe_applied is False
