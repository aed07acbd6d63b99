"""/metrics: saga outcomes counted across all worker processes of the gateway."""

from __future__ import annotations

from tests.support.api import claim, create, metric


async def test_saga_outcomes_are_counted_across_workers(http, gateway, name):
    def read(sample: str, **labels: str):
        return metric(http, gateway, sample, saga="claim", **labels)

    before = {
        sample: await read(sample)
        for sample in ("saga_started_total", "saga_completed_total", "saga_compensated_total")
    }
    durations_before = await read("saga_duration_seconds_count", status="completed")
    await create(http, gateway, name, 2)

    statuses = [(await claim(http, gateway, f"user_{n}", name))[0] for n in range(10)]

    assert statuses.count(200) == 2
    after = {sample: await read(sample) for sample in before}
    assert after["saga_started_total"] - before["saga_started_total"] == 10
    assert after["saga_completed_total"] - before["saga_completed_total"] == 2
    assert after["saga_compensated_total"] - before["saga_compensated_total"] == 8
    assert await read("saga_duration_seconds_count", status="completed") - durations_before == 2


async def test_metrics_are_prometheus_text(http, gateway):
    async with http.get(f"{gateway}/metrics") as response:
        assert response.status == 200
        assert response.content_type == "text/plain"
        text = await response.text()
    assert "# TYPE saga_started_total counter" in text
    assert "# TYPE saga_duration_seconds histogram" in text
