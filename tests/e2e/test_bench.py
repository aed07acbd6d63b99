"""The benchmark tool, run small against the real gateway: it loads, checks and reports."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path


async def bench(*args: str, cwd: Path | None = None) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench", *args, stdout=asyncio.subprocess.PIPE, cwd=cwd
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


READ_SMALL = (
    "--requests",
    "50",
    "--stock",
    "300",
    "--concurrency",
    "8",
    "--ceiling-seconds",
    "0.3",
)


async def test_the_read_scenario_reads_a_coupon_with_its_claimants(gateway):
    code, out = await bench(
        "read", "--base-url", gateway, "--database-url", "", *READ_SMALL, "--json"
    )
    report = json.loads(out)
    assert (code, report["statuses"]) == (0, {"200": 50})
    # Checked for real: the 300 claims made first are the coupon's claimants, once each.
    assert (report["correct"], report["problems"]) == (True, [])
    assert report["ceilings"]["hot_row_tx_per_second"] is None  # no database: no hot-row ceiling
    assert report["worker_rss_mib"] is None
    assert report["not_measured"]["worker_rss_mib"] == "gateway not started by bench"
    assert report["not_measured"]["hot_row_tx_per_second"] == "no --database-url"


async def test_the_table_says_what_was_not_measured_and_why(gateway):
    code, out = await bench("read", "--base-url", gateway, "--database-url", "", *READ_SMALL)
    assert code == 0
    rows = dict(line.split("  ", 1) for line in out.splitlines() if "  " in line)
    rows = {label.strip(): value.strip() for label, value in rows.items()}
    assert rows["worker RSS MiB"] == "not measured (gateway not started by bench)"
    assert rows["hot-row tx/s (ceiling)"] == "not measured (no --database-url)"
    assert rows["floor p99 ms (UPDATE+SET)"] == "not measured (flash-sale only)"
    assert rows["correct"] == "yes"
    assert "None" not in out and "[]" not in out


async def test_help_says_what_read_does_first_and_runs_from_any_directory(tmp_path):
    code, out = await bench("--help", cwd=tmp_path)  # the installed package, not ./bench
    assert code == 0
    assert "first makes --stock claims" in out
    assert "read" in out and "(100 / 10000 / 10000 / 4)" in out


def test_devstack_runs_from_any_directory(tmp_path):
    found = subprocess.run(
        [sys.executable, "-m", "devstack.ferretdb"], cwd=tmp_path, capture_output=True, text=True
    )
    assert found.returncode == 0, found.stderr
    assert Path(found.stdout.strip()).exists()  # FerretDB's binary, built or cached
