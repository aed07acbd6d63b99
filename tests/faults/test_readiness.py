"""/ready follows the stores: 503 naming the one that stopped answering, 200 once it is back."""

from __future__ import annotations

import pytest

from tests.support.proxy import through
from tests.support.servers import app_in_process


async def readiness(http, base: str) -> tuple[int, dict]:
    async with http.get(f"{base}/ready") as response:
        return response.status, await response.json()


@pytest.mark.parametrize(
    ("store", "field"),
    [("postgresql", "database_url"), ("mongodb", "mongo_url"), ("redis", "redis_url")],
)
async def test_ready_goes_503_while_a_store_is_away_and_back_after(
    http, settings, pg_proxy, mongo_proxy, redis_proxy, store, field
):
    proxy = {"database_url": pg_proxy, "mongo_url": mongo_proxy, "redis_url": redis_proxy}[field]
    async with app_in_process(through(settings, **{field: proxy})) as base:
        assert (await readiness(http, base))[0] == 200

        await proxy.cut()
        status, body = await readiness(http, base)
        assert status == 503
        assert body["error"] == "unavailable"
        assert store in body["message"]
        assert body["stores"][store] == "unavailable"
        assert [s for s, state in body["stores"].items() if state == "ok"] == [
            s for s in ("postgresql", "mongodb", "redis") if s != store
        ]
        async with http.get(f"{base}/health") as response:
            assert response.status == 200  # alive, only not ready

        await proxy.restore()
        for _ in range(50):  # drivers reconnect on their own schedule
            status, body = await readiness(http, base)
            if status == 200:
                break
        assert (status, body["stores"][store]) == (200, "ok")
