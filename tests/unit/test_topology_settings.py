"""The settings that say where each store's primary is (several PostgreSQL hosts, Redis
Sentinels) and how durable the saga log's writes are: refused at start when they cannot
work, one line per bad setting, no password echoed."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from orchestrator.settings import Settings, SettingsError, load_settings
from orchestrator.store_addresses import postgres_hosts, sentinel_addresses
from tests.unit.test_settings import refused_in_one_line

TWO_HOSTS = "postgresql://coupons:s3cret@pg1:5432,pg2:5432/coupons"


def test_several_postgres_hosts_with_a_read_write_target_are_taken():
    url = f"{TWO_HOSTS}?target_session_attrs=read-write"
    assert Settings(_env_file=None, database_url=url).database_url == url
    assert postgres_hosts(url) == ["pg1:5432", "pg2:5432"]


def test_several_postgres_hosts_without_a_target_are_refused_without_the_password(monkeypatch):
    """asyncpg's default (any) would take the first host that answers, a standby too."""
    line = refused_in_one_line(monkeypatch, DATABASE_URL=TWO_HOSTS)

    assert line.startswith("DATABASE_URL=postgresql://coupons:***@pg1:5432,pg2:5432/coupons")
    assert "target_session_attrs=read-write" in line
    assert "s3cret" not in line


def test_hosts_named_in_the_query_count_too():
    with pytest.raises(ValidationError, match="target_session_attrs"):
        Settings(_env_file=None, database_url="postgresql:///coupons?host=pg1,pg2")


def test_one_postgres_host_needs_no_target():
    Settings(_env_file=None, database_url="postgresql://postgres@pg1:5432/coupons")


def test_sentinels_with_their_master_are_taken():
    settings = Settings(
        _env_file=None,
        redis_sentinels="s1:26379, s2:26379,[::1]:26380",
        redis_sentinel_master="coupons",
    )
    assert sentinel_addresses(settings.redis_sentinels) == [
        ("s1", 26379),
        ("s2", 26379),
        ("::1", 26380),
    ]


@pytest.mark.parametrize("sentinels", ["s1", "s1:26379,s2", "s1:port", ":26379", "s1:70000"])
def test_a_sentinel_that_is_not_host_and_port_is_refused_in_one_line(monkeypatch, sentinels):
    line = refused_in_one_line(
        monkeypatch, REDIS_SENTINELS=sentinels, REDIS_SENTINEL_MASTER="coupons"
    )
    assert line.startswith(f"REDIS_SENTINELS={sentinels} is not valid:")
    assert "is not host:port" in line


def test_sentinels_without_the_master_name_are_refused_in_one_line(monkeypatch):
    line = refused_in_one_line(monkeypatch, REDIS_SENTINELS="s1:26379")
    assert line.startswith("REDIS_SENTINEL_MASTER= is not valid:")
    assert "REDIS_SENTINELS" in line


def test_sentinels_need_a_tcp_redis_url(monkeypatch):
    line = refused_in_one_line(
        monkeypatch,
        REDIS_SENTINELS="s1:26379",
        REDIS_SENTINEL_MASTER="coupons",
        REDIS_URL="unix:///run/redis.sock",
    )
    assert line.startswith("REDIS_SENTINELS=s1:26379 is not valid:")
    assert "redis:// or rediss://" in line


def test_each_bad_setting_has_its_own_line(monkeypatch):
    monkeypatch.chdir(Path(__file__).parent)  # no .env here
    monkeypatch.setenv("DATABASE_URL", TWO_HOSTS)
    monkeypatch.setenv("REDIS_SENTINELS", "s1")
    with pytest.raises(SettingsError) as refused:
        load_settings()
    lines = str(refused.value).splitlines()
    # The master's name is asked for only once the sentinels are right.
    assert [line.split("=", 1)[0] for line in lines] == ["DATABASE_URL", "REDIS_SENTINELS"]


def test_a_wait_for_replicas_past_half_the_store_timeout_is_refused():
    """Measured: a WAIT of 100 ms that runs its course answers after about 200 ms."""
    with pytest.raises(ValidationError, match="REDIS_WAIT_TIMEOUT_MS must be at most half"):
        Settings(
            _env_file=None,
            redis_wait_replicas=1,
            redis_wait_timeout_ms=2501,
            store_timeout_seconds=5.0,
        )
    Settings(_env_file=None, redis_wait_replicas=1, redis_wait_timeout_ms=2500)


def test_no_wait_is_the_default():
    assert Settings(_env_file=None).redis_wait_replicas == 0
