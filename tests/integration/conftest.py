"""Fixtures the integration tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from services.redis_keys import RedisKeys
from tests.support.apart import forget_saga_log, own_keys


@pytest.fixture
async def keys(redis) -> AsyncIterator[RedisKeys]:
    """A saga-log key prefix of the test's own: the indexes list only the test's sagas."""
    keys = own_keys()
    yield keys
    await forget_saga_log(redis, keys)
