"""The monitoring files: alert rules promtool accepts, and rules and dashboard that ask only
for metrics the gateway exports (scraped from the test gateway after some traffic); the
compose stack starts Prometheus and Grafana on request only, with healthchecks that
`up --wait` waits on."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support.api import claim, create

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "coupon-service.json"

# PromQL words that are not metric names: functions, aggregations, keywords.
_PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "rate", "irate", "increase", "histogram_quantile",
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
    "bool", "offset", "topk", "bottomk", "abs", "clamp_min", "clamp_max", "vector", "time",
}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads."""
    expr = re.sub(r"\{[^}]*\}", " ", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", " ", expr)  # range selectors
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", " ", expr)  # grouping labels
    words = re.findall(r"(?<![\w.])([A-Za-z_:][\w:]*)\b(?!\s*\()", expr)
    return {word for word in words if word not in _PROMQL_WORDS}


def rule_expressions() -> list[str]:
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def dashboard_expressions() -> list[str]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


@pytest.fixture(scope="module")
async def exported(gateway) -> set[str]:
    """Every sample name the gateway's /metrics has once claims, refusals and reads ran."""
    name = f"PROMO_{uuid.uuid4().hex[:12]}"
    async with aiohttp.ClientSession() as http:
        await create(http, gateway, name, 1)
        for user in ("first", "first", "second"):  # a claim, a duplicate, out of stock
            await claim(http, gateway, user, name)
        async with http.get(f"{gateway}/api/coupons/{name}") as response:
            assert response.status == 200
        async with http.get(f"{gateway}/metrics") as response:
            text = await response.text()
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


def test_metric_names_are_read_from_promql():
    expr = 'histogram_quantile(0.99, sum by (le) (rate(a_bucket{route="/x", le!=""}[5m]))) / b'
    assert metric_names(expr) == {"a_bucket", "b"}
    assert metric_names("min by (store) (store_up) == 0") == {"store_up"}


def test_promtool_accepts_the_rules_and_the_config():
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian package prometheus) is installed by scripts/install-deps"
    for command in (["check", "rules", "alerts.yml"], ["check", "config", "prometheus.yml"]):
        run = subprocess.run([promtool, *command], cwd=PROMETHEUS, capture_output=True, text=True)
        assert run.returncode == 0, run.stdout + run.stderr


def test_the_rules_cover_what_an_operator_is_paged_for():
    used = set().union(*(metric_names(expr) for expr in rule_expressions()))
    assert {
        "saga_failed_total",
        "saga_stuck",
        "http_requests_total",
        "store_up",
        "claim_admission_refused_total",
    } <= used


def test_every_metric_the_rules_use_is_exported(exported):
    for expr in rule_expressions():
        assert metric_names(expr) <= exported, expr


def test_every_metric_the_dashboard_uses_is_exported(exported):
    expressions = dashboard_expressions()
    assert len(expressions) >= 5
    for expr in expressions:
        assert metric_names(expr), expr
        assert metric_names(expr) <= exported, expr


def services(*profile: str) -> dict[str, Any]:
    """docker-compose.yml's services as the Compose v2 parser reads them."""
    compose = Path(sys.executable).with_name("docker-compose")
    parsed = subprocess.run(
        [compose, "-f", ROOT / "docker-compose.yml", *profile, "config", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(parsed.stdout)["services"]


def test_prometheus_and_grafana_start_only_with_the_monitoring_profile():
    assert {"prometheus", "grafana"}.isdisjoint(services())
    monitoring = services("--profile", "monitoring")
    mounts = {
        name: {Path(m["source"]).relative_to(ROOT).as_posix() for m in monitoring[name]["volumes"]
               if m["type"] == "bind"}
        for name in ("prometheus", "grafana")
    }  # fmt: skip
    assert mounts["prometheus"] == {"deploy/prometheus"}
    assert mounts["grafana"] == {"deploy/grafana/provisioning", "deploy/grafana/dashboards"}
    scrape = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())["scrape_configs"]
    assert scrape[0]["static_configs"][0]["targets"] == ["app:8080"]


@pytest.mark.parametrize(
    ("name", "ready"),
    [
        ("prometheus", "http://127.0.0.1:9090/-/ready"),
        ("grafana", "http://127.0.0.1:3000/api/health"),
    ],
)
def test_monitoring_has_healthchecks_so_up_wait_can_wait(name, ready):
    """`docker compose --profile monitoring up --wait` waits on healthchecks; without one it
    cannot. No Docker engine runs here: the images' wget and curl are not tried."""
    service = services("--profile", "monitoring")[name]
    check = service["healthcheck"]
    assert check["test"][0] in ("CMD", "CMD-SHELL")
    assert ready in " ".join(check["test"][1:])


def test_grafana_starts_once_prometheus_is_ready():
    depends_on = services("--profile", "monitoring")["grafana"]["depends_on"]
    assert depends_on["prometheus"]["condition"] == "service_healthy"
