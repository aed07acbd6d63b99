"""The benchmark tool, run small against the real gateway: it loads, checks and reports."""

from __future__ import annotations

import asyncio
import json
import sys


async def bench(*args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench", *args, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode()


async def test_a_small_flash_sale_is_measured_and_checked(gateway, settings):
    code, out = await bench(
        "flash-sale",
        *("--base-url", gateway, "--database-url", settings.database_url),
        *("--redis-url", settings.redis_url),
        *("--requests", "300", "--users", "200", "--stock", "50", "--concurrency", "20"),
        *("--ceiling-seconds", "0.3", "--json"),
    )
    report = json.loads(out)
    assert code == 0, report["problems"]
    assert report["correct"] is True
    assert report["statuses"] == {"200": 50, "409": 250}
    assert report["ceilings"]["hot_row_tx_per_second"] > 0
    assert report["ratios"]["requests_per_second_to_bare_gateway"] > 0
    assert report["ceilings"]["floor_p99_ms"] > 0  # the UPDATE + SET floor, measured too
    assert report["ratios"]["p99_to_floor_p99"] > 0


async def test_the_read_scenario_reads_a_coupon_with_its_claimants(gateway):
    code, out = await bench(
        "read",
        *("--base-url", gateway, "--requests", "50", "--stock", "300", "--concurrency", "8"),
        *("--database-url", "", "--ceiling-seconds", "0.3", "--json"),
    )
    report = json.loads(out)
    assert (code, report["statuses"]) == (0, {"200": 50})
    assert report["ceilings"]["hot_row_tx_per_second"] is None  # no database: no hot-row ceiling
