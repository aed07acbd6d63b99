"""Settings that cannot work together are refused at start, with the reason."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from orchestrator.settings import Settings


def test_a_lease_no_longer_than_the_retries_is_refused():
    with pytest.raises(ValidationError, match="SAGA_LEASE_SECONDS must be longer"):
        Settings(_env_file=None, saga_lease_seconds=5.0, saga_retry_seconds=5.0)


def test_the_defaults_hold_together():
    settings = Settings(_env_file=None)
    assert settings.saga_lease_seconds > settings.saga_retry_seconds
