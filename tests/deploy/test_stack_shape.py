"""The compose stack's shape, as the Compose v2 parser reads docker-compose.yml.

No Docker engine runs here, so the stack cannot be started; this checks what `docker
compose up -d --build --wait` relies on: the four services, health-gated start,
persistent volumes, restart policies, the API on port 8080 (or APP_PORT), Redis's
append-only file, and PostgreSQL's connection limit with room for the service's budget.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
STORES = ("postgres", "mongo", "redis")
# Connections PostgreSQL must have left past the service's budget: the slots it keeps for
# superusers (superuser_reserved_connections), the replay tool's and an operator's psql.
SUPERUSER_RESERVED = 3
REPLAY_TOOL = 2
OPERATOR = 1


def parsed_stack(**environment: str) -> dict[str, Any]:
    """docker-compose.yml as `docker compose` reads it with `environment` (else no APP_PORT)."""
    compose = Path(sys.executable).with_name("docker-compose")
    parsed = subprocess.run(
        [compose, "-f", ROOT / "docker-compose.yml", "config", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
        env={k: v for k, v in os.environ.items() if k != "APP_PORT"} | environment,
    )
    assert parsed.stderr == ""
    return json.loads(parsed.stdout)


@pytest.fixture(scope="module")
def stack() -> dict[str, Any]:
    return parsed_stack()


def test_four_services(stack):
    assert set(stack["services"]) == {*STORES, "app"}


@pytest.mark.parametrize("store", STORES)
def test_every_store_has_a_healthcheck_and_a_named_volume(stack, store):
    service = stack["services"][store]
    assert service["healthcheck"]["test"][0] == "CMD"
    (mount,) = service["volumes"]
    assert mount["type"] == "volume"
    assert mount["source"] in stack["volumes"]


def test_the_app_starts_only_once_every_store_is_healthy(stack):
    depends_on = stack["services"]["app"]["depends_on"]
    assert {name: d["condition"] for name, d in depends_on.items()} == dict.fromkeys(
        STORES, "service_healthy"
    )


def test_the_api_is_published_on_8080(stack):
    app = stack["services"]["app"]
    assert app["build"]["dockerfile"] == "Dockerfile"
    assert [(p["published"], p["target"]) for p in app["ports"]] == [("8080", 8080)]


def test_app_port_picks_another_host_port():
    (port,) = parsed_stack(APP_PORT="8081")["services"]["app"]["ports"]
    assert (port["published"], port["target"]) == ("8081", 8080)


def test_the_app_reaches_the_stores_by_service_name(stack):
    environment = stack["services"]["app"]["environment"]
    assert "@postgres:5432/" in environment["DATABASE_URL"]
    assert environment["MONGO_URL"].startswith("mongodb://mongo:27017")
    assert environment["REDIS_URL"].startswith("redis://redis:6379")


def test_redis_keeps_the_saga_log_in_an_append_only_file(stack):
    command = stack["services"]["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"


def test_stores_are_postgres_16_mongo_7_redis_7(stack):
    images = {name: stack["services"][name]["image"] for name in STORES}
    assert images == {"postgres": "postgres:16", "mongo": "mongo:7", "redis": "redis:7"}


def test_every_service_restarts_after_a_crash_or_a_reboot(stack):
    policies = {name: service.get("restart") for name, service in stack["services"].items()}
    assert policies == dict.fromkeys(stack["services"], "unless-stopped")


def test_postgres_has_room_for_the_service_budget_the_replay_tool_and_an_operator(stack):
    command = stack["services"]["postgres"]["command"]
    (limit,) = [arg.partition("=")[2] for arg in command if arg.startswith("max_connections=")]
    budget = int(stack["services"]["app"]["environment"]["PG_MAX_CONNECTIONS"])
    assert budget + REPLAY_TOOL + OPERATOR <= int(limit) - SUPERUSER_RESERVED


@pytest.mark.parametrize("setting", ["MONGO_MAX_CONNECTIONS", "REDIS_MAX_CONNECTIONS"])
def test_the_service_budget_is_set_for_every_store(stack, setting):
    assert int(stack["services"]["app"]["environment"][setting]) > 0
