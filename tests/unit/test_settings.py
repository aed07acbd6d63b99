"""Settings that cannot work together are refused at start, with the reason."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from orchestrator.saga.retry_policy import RetryPolicy
from orchestrator.settings import DRIVER_OVERRUN_SECONDS, Settings, SettingsError, load_settings


def test_a_lease_no_longer_than_the_retries_is_refused():
    with pytest.raises(ValidationError, match="SAGA_LEASE_SECONDS must be longer"):
        Settings(_env_file=None, saga_lease_seconds=5.0, saga_retry_seconds=5.0)


def test_the_defaults_hold_together():
    settings = Settings(_env_file=None)
    assert settings.saga_lease_seconds > settings.saga_retry_seconds
    assert settings.saga_retry_seconds >= 2 * settings.store_timeout_seconds
    assert settings.step_timeout_seconds >= settings.store_timeout_seconds + DRIVER_OVERRUN_SECONDS
    assert settings.hold_settle_seconds > settings.saga_lease_seconds + settings.saga_retry_seconds


def test_a_step_timeout_no_longer_than_the_store_timeout_is_refused():
    with pytest.raises(ValidationError, match="STEP_TIMEOUT_SECONDS must be at least"):
        Settings(_env_file=None, step_timeout_seconds=5.0, store_timeout_seconds=5.0)


def test_a_step_timeout_that_can_cut_pymongo_in_its_wait_for_a_server_is_refused(monkeypatch):
    """Issue 21's timings: a step cut at 1.5 s, PyMongo's deadline at 1 s. PyMongo looks at
    its deadline only between half-second waits, so steps cut it in them, and a client cut
    there wedged for good."""
    line = refused_in_one_line(
        monkeypatch,
        STEP_TIMEOUT_SECONDS="1.5",
        STORE_TIMEOUT_SECONDS="1",
        SAGA_RETRY_SECONDS="2",
        SAGA_LEASE_SECONDS="3",
        HOLD_SETTLE_SECONDS="8",
    )
    assert line.startswith("STEP_TIMEOUT_SECONDS must be at least STORE_TIMEOUT_SECONDS + 1:")
    assert "PyMongo" in line


def test_a_step_timeout_a_second_past_the_store_timeout_is_accepted():
    settings = Settings(_env_file=None, step_timeout_seconds=2.0, store_timeout_seconds=1.0)
    assert settings.step_timeout_seconds - settings.store_timeout_seconds == DRIVER_OVERRUN_SECONDS


def test_a_settle_time_within_a_lease_and_the_retries_is_refused():
    with pytest.raises(ValidationError, match="HOLD_SETTLE_SECONDS must be longer"):
        Settings(
            _env_file=None,
            saga_lease_seconds=60.0,
            saga_retry_seconds=10.0,
            hold_settle_seconds=70.0,
        )


def refused_in_one_line(monkeypatch, **environment: str) -> str:
    """What `load_settings` says of this environment (and no .env), which must be one line."""
    monkeypatch.chdir(tmp_path_without_env := Path(__file__).parent)  # no .env here
    assert not (tmp_path_without_env / ".env").exists()
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as refused:
        load_settings()
    (line,) = str(refused.value).splitlines()
    return line


def test_retries_shorter_than_two_store_timeouts_are_refused_in_one_line(monkeypatch):
    line = refused_in_one_line(monkeypatch, STORE_TIMEOUT_SECONDS="3", SAGA_RETRY_SECONDS="5")
    assert line.startswith("SAGA_RETRY_SECONDS must be at least twice STORE_TIMEOUT_SECONDS")


def test_retries_of_exactly_two_store_timeouts_are_accepted():
    Settings(_env_file=None, saga_retry_seconds=6.0, store_timeout_seconds=3.0)


def test_every_broken_rule_is_named_on_one_line(monkeypatch):
    line = refused_in_one_line(monkeypatch, STEP_TIMEOUT_SECONDS="1", HOLD_SETTLE_SECONDS="10")
    assert line.startswith("STEP_TIMEOUT_SECONDS must be at least STORE_TIMEOUT_SECONDS + 1")
    assert "HOLD_SETTLE_SECONDS must be longer" in line


def test_the_retry_policy_is_built_from_the_settings():
    settings = Settings(
        _env_file=None, saga_retry_seconds=4.5, step_timeout_seconds=3.0, store_timeout_seconds=2.0
    )
    assert RetryPolicy.from_settings(settings) == RetryPolicy(
        retry_seconds=4.5, step_timeout_seconds=3.0, store_timeout_seconds=2.0
    )
