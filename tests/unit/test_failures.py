"""Which store errors are transient (503, retried) and which are bugs (500, loud)."""

from __future__ import annotations

import pymongo.errors
import pytest

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
    ],
    ids=lambda error: type(error).__name__,
)
def test_transient_mongodb_errors_become_store_unavailable(error):
    with pytest.raises(StoreUnavailable, match="mongodb"), unavailable_on_failure("mongodb"):
        raise error


def test_a_programming_error_stays_what_it_is():
    with pytest.raises(KeyError), unavailable_on_failure("mongodb"):
        raise KeyError("user_id")


def test_another_runtime_error_stays_what_it_is():
    with pytest.raises(RuntimeError), unavailable_on_failure("mongodb"):
        raise RuntimeError("cannot wait on un-acquired lock, and something else")
