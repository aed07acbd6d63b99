"""What a store outage writes to a gateway's logs: one line when the store goes away and one
when it is back, per process, without a traceback; and the `store_up` metric follows it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.apart import saga_log_apart
from tests.support.api import metric
from tests.support.logs import json_lines
from tests.support.proxy import ProxyInThread
from tests.support.servers import gateway_process
from tests.support.settings import changed
from tests.support.waiting import eventually

WORKERS = 2


@pytest.fixture
def pg_cut_off(settings) -> Iterator[ProxyInThread]:
    proxy = ProxyInThread(settings.database_url)
    yield proxy
    proxy.close()


def about_postgresql(path: Path, message: str) -> list[dict]:
    return [line for line in json_lines(path) if line["message"].startswith(message)]


async def test_a_postgresql_outage_is_two_lines_per_process_without_a_traceback(
    http, settings, pg_cut_off, tmp_path
):
    log_path = tmp_path / "gateway.log"
    async with saga_log_apart(settings) as apart:
        gateway_settings = changed(
            apart.settings,
            {
                "recovery_interval_seconds": 0.2,  # a recovery round (that fails) 5x a second
                "database_url": pg_cut_off.proxy.url_through(settings.database_url),
                "log_level": "info",
                "pg_pool_size": 2,
            },
        )
        before_the_cut = await outage_and_back(http, gateway_settings, pg_cut_off, log_path)
    lines = json_lines(log_path)[before_the_cut:]
    outage = [line for line in lines if "postgres" in json.dumps(line).lower()]
    assert len(outage) == 2 * WORKERS, [line["message"] for line in outage]
    assert all(line["level"] == "warning" for line in outage)
    assert not [line for line in lines if "Traceback" in line.get("error", "")]
    assert max(len(json.dumps(line)) for line in lines) < 600


async def outage_and_back(http, gateway_settings, pg_cut_off, log_path: Path) -> int:
    """Cut PostgreSQL away from a gateway, meet the outage many times, then restore it.
    Returns how many lines the log had before the cut."""
    with gateway_process(gateway_settings, log_path, workers=WORKERS) as base:

        async def every_worker_started() -> bool:
            """Each worker samples its pool once it has opened and warmed everything."""
            pool_max = await metric(
                http, base, "store_pool_connections", store="postgresql", state="max"
            )
            return pool_max == gateway_settings.pg_pool_size * WORKERS

        await eventually(every_worker_started)
        before_the_cut = len(json_lines(log_path))
        pg_cut_off.cut()

        async def said_unavailable() -> bool:
            return len(about_postgresql(log_path, "postgresql is unavailable")) == WORKERS

        await eventually(said_unavailable)
        # Meet the outage many more times: readiness probes, recovery rounds, pool refills.
        for _ in range(20):
            async with http.get(f"{base}/ready") as response:
                assert response.status == 503
        assert await metric(http, base, "store_up", store="postgresql") == 0
        assert await metric(http, base, "store_up", store="redis") == 1

        pg_cut_off.restore()

        async def said_available() -> bool:
            return len(about_postgresql(log_path, "postgresql is available again")) == WORKERS

        await eventually(said_available)
        assert await metric(http, base, "store_up", store="postgresql") == 1
    return before_the_cut
