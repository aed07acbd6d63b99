"""Which store errors are transient (503, retried) and which are bugs (500, loud)."""

from __future__ import annotations

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
    ],
    ids=lambda error: type(error).__name__,
)
def test_transient_mongodb_errors_become_store_unavailable(error):
    with pytest.raises(StoreUnavailable, match="mongodb"), unavailable_on_failure("mongodb"):
        raise error


def test_a_programming_error_stays_what_it_is():
    with pytest.raises(KeyError), unavailable_on_failure("mongodb"):
        raise KeyError("user_id")


def test_redis_at_maxmemory_is_unavailable_not_a_bug():
    """noeviction at maxmemory: Redis refuses writes (and scripts that write) until memory frees."""
    refused = redis.exceptions.OutOfMemoryError(
        "command not allowed when used memory > 'maxmemory'. script: 1f0e, on @user_script:8."
    )
    with pytest.raises(StoreUnavailable, match="redis"), unavailable_on_failure("redis"):
        raise refused
