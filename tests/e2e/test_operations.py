"""Operating the gateway: /metrics across worker processes, request ids in logs, /ready."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from tests.support.apart import saga_log_apart
from tests.support.api import claim, create, metric
from tests.support.servers import gateway_process
from tests.support.settings import changed
from tests.support.waiting import eventually


@pytest.fixture
async def own_gateway(settings, tmp_path) -> AsyncIterator[str]:
    """A gateway (two workers) nobody else sends traffic to and whose recoverer sees only
    its own sagas: its counters move by this test's requests alone."""
    async with saga_log_apart(settings) as apart:
        # Repeat claims each run their saga here (none answered from memory), to be counted.
        every_repeat_a_saga = changed(apart.settings, {"claimed_memo_entries": 0})
        with gateway_process(every_repeat_a_saga, tmp_path / "own.log") as base:
            yield base


async def test_saga_outcomes_are_counted_across_workers(http, own_gateway, name):
    gateway = own_gateway

    def read(sample: str, **labels: str):
        return metric(http, gateway, sample, saga="claim", **labels)

    samples = ("saga_started_total", "saga_completed_total", "saga_compensated_total")
    before = {sample: await read(sample) for sample in samples}
    refused_before = await read("saga_refused_total", reason="already_claimed")
    durations_before = await read("saga_duration_seconds_count", status="completed")
    await create(http, gateway, name, 10)

    # Four claims, then the same four again: duplicates are refused by their saga.
    users = [f"user_{n}" for n in range(4)] * 2
    statuses = [(await claim(http, gateway, user, name))[0] for user in users]

    assert statuses == [200] * 4 + [409] * 4
    after = {sample: await read(sample) for sample in before}
    assert after["saga_started_total"] - before["saga_started_total"] == 8
    assert after["saga_completed_total"] - before["saga_completed_total"] == 4
    # A refusal took nothing, so nothing was undone: not a compensation.
    assert await read("saga_refused_total", reason="already_claimed") - refused_before == 4
    assert after["saga_compensated_total"] - before["saga_compensated_total"] == 0
    assert await read("saga_duration_seconds_count", status="completed") - durations_before == 4


async def test_metrics_are_prometheus_text(http, own_gateway, name):
    gateway = own_gateway
    await create(http, gateway, name, 1)
    assert (await claim(http, gateway, "counted", name))[0] == 200  # a saga to count

    texts = []

    async def duration_observed() -> bool:
        async with http.get(f"{gateway}/metrics") as response:
            assert response.status == 200
            assert response.content_type == "text/plain"
            texts.append(await response.text())
        return "# TYPE saga_duration_seconds histogram" in texts[-1]

    # The answer comes at the pivot; the saga's duration is observed once it has ended.
    await eventually(duration_observed)
    text = texts[-1]
    assert "# TYPE saga_started_total counter" in text
    assert "# TYPE saga_duration_seconds histogram" in text


async def test_requests_are_counted_by_route_pattern_and_status(http, own_gateway, name):
    gateway = own_gateway
    route = {"method": "GET", "route": "/api/coupons/{name}"}
    before = await metric(http, gateway, "http_requests_total", status="404", **route)
    async with http.get(f"{gateway}/api/coupons/{name}") as response:
        assert response.status == 404

    after = await metric(http, gateway, "http_requests_total", status="404", **route)
    assert after - before == 1
    assert await metric(http, gateway, "http_request_duration_seconds_count", **route) >= 1
    assert (
        await metric(http, gateway, "store_pool_wait_seconds_count", store="mongodb") > 0
    )  # every claim and read checks a connection out


async def test_request_ids_are_echoed_and_logged_with_the_saga(http, settings, tmp_path, name):
    log_path = tmp_path / "gateway.log"
    with gateway_process(changed(settings, {"log_level": "debug"}), log_path) as base:
        await create(http, base, name, 1)
        async with http.post(
            f"{base}/api/coupons/claim",
            json={"user_id": "traced", "coupon_name": name},
            headers={"X-Request-Id": "trace-42"},
        ) as response:
            assert response.headers["X-Request-Id"] == "trace-42"
            saga_id = response.headers["X-Saga-Id"]
        async with http.get(
            f"{base}/api/coupons/{name}", headers={"X-Request-Id": "no spaces\\allowed"}
        ) as response:
            made_up = response.headers["X-Request-Id"]
    assert len(made_up) == 32 and made_up.isalnum()  # an unusable id is replaced, not echoed

    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line]
    traced = [line for line in lines if line.get("request_id") == "trace-42"]
    assert {line.get("saga_id") for line in traced} >= {saga_id}  # the saga's own line
    assert all({"time", "level", "message"} <= line.keys() for line in lines)
    assert not any(settings.database_url in line["message"] for line in lines)


async def test_ready_names_every_store(http, gateway):
    async with http.get(f"{gateway}/ready") as response:
        assert response.status == 200
        assert await response.json() == {
            "status": "ready",
            "stores": {"postgresql": "ok", "mongodb": "ok", "redis": "ok"},
        }
