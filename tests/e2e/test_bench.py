"""The benchmark tool, run small against the real gateway: it loads, checks and reports."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from bench.ceilings import HOLD_TX_TABLES
from bench.cpu import TICKS_PER_SECOND, descendants, processes, sample, usage
from bench.roles import gateway_started


async def bench(*args: str, cwd: Path | None = None) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench", *args, stdout=asyncio.subprocess.PIPE, cwd=cwd
    )
    out, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode()


def stores(settings) -> tuple[str, ...]:
    return (
        *("--database-url", settings.database_url, "--mongo-url", settings.mongo_url),
        *("--redis-url", settings.redis_url),
    )


STACK_ROLES = ("gateway", "mongodb", "postgresql", "redis")


async def test_a_small_flash_sale_is_measured_and_checked(gateway, settings):
    code, out = await bench(
        "flash-sale",
        *("--base-url", gateway, *stores(settings)),
        *("--requests", "300", "--users", "200", "--stock", "50", "--concurrency", "20"),
        *("--ceiling-seconds", "0.3", "--json"),
    )
    report = json.loads(out)
    assert code == 0, report["problems"]
    assert report["correct"] is True
    assert report["requests"] == 300  # exactly the requests asked for, each answered
    assert report["statuses"] == {"200": 50, "409": 250}
    assert report["ceilings"]["hot_row_tx_per_second"] > 0
    assert report["ratios"]["requests_per_second_to_bare_gateway"] > 0
    assert report["ceilings"]["floor_p99_ms"] > 0  # the UPDATE + SET floor, measured too
    assert report["ratios"]["p99_to_floor_p99"] > 0


async def test_cpu_per_claim_is_split_by_role_and_the_single_store_floor_is_checked(
    gateway, settings
):
    code, out = await bench(
        "flash-sale",
        *("--base-url", gateway, *stores(settings)),
        *("--requests", "300", "--users", "200", "--stock", "50", "--concurrency", "20"),
        *("--ceiling-seconds", "0.3", "--json"),
    )
    report = json.loads(out)
    assert code == 0, report["problems"]
    cpu = report["cpu"]
    # Every role found by its listening port, the gateway's workers with their parent.
    for role in STACK_ROLES:
        assert "listening on port" in cpu["roles"][role], cpu["roles"]
    assert "with their parent" in cpu["roles"]["gateway"]  # the fixture's 2 workers' parent
    assert cpu["roles"]["load_generator"] == "bench's own process"
    assert len(cpu["load_average_before"]) == 3  # how busy the machine was, as it began
    assert "PostgreSQL backends of its database" in cpu["roles"]["mongodb"]
    per_claim = cpu["ms_per_successful_claim"]
    assert per_claim["gateway"] > 0 and per_claim["load_generator"] > 0
    assert all(per_claim[role] >= 0 for role in (*STACK_ROLES, "other"))
    assert per_claim["stack"] == pytest.approx(
        sum(per_claim[role] for role in STACK_ROLES), abs=0.01
    )
    # Not compared with "machine": /proc/stat and the processes' own times are kept by
    # different clocks, a tick apart per process, and a backend that exits mid-run brings
    # its whole life's time with it; on a run this small that outweighs the claims.

    single = report["single_store"]  # the same load against one PostgreSQL transaction per claim
    assert (single["correct"], single["problems"]) == (True, [])
    assert single["requests"] == 300
    assert single["statuses"] == {"200": 50, "409": 250}  # exact winners, checked like ours
    assert single["cpu"]["roles"]["gateway"].startswith("the single-store server bench started")
    assert single["cpu"]["ms_per_successful_claim"]["gateway"] > 0
    ratios = report["ratios"]
    for ratio in (
        "requests_per_second_to_single_store",
        "claims_per_second_to_single_store",
        "p99_to_single_store_p99",
        "cpu_per_claim_to_single_store",
    ):
        assert ratios[ratio] > 0, ratio


async def test_claim_rate_reports_the_hold_insert_ceiling_on_tables_it_drops(gateway, settings):
    code, out = await bench(
        "claim-rate",
        *("--base-url", gateway, *stores(settings)),
        *("--requests", "60", "--users", "60", "--stock", "60", "--concurrency", "8"),
        *("--ceiling-seconds", "0.3", "--json"),
    )
    report = json.loads(out)
    assert code == 0, report["problems"]
    assert report["statuses"] == {"200": 60}
    # BEGIN; INSERT a hold; guarded UPDATE of the hot row; COMMIT, from 16 connections.
    assert report["ceilings"]["hold_tx_per_second"] > 0
    assert report["ratios"]["claims_per_second_to_hold_tx"] > 0
    assert "hold_tx_per_second" not in report["not_measured"]
    connection = await asyncpg.connect(settings.database_url)
    try:
        left = await connection.fetch(
            "SELECT tablename FROM pg_tables WHERE tablename = any($1::text[])",
            [*HOLD_TX_TABLES, "bench_hot_row"],
        )
        service = await connection.fetchval(
            "SELECT count(*) FROM pg_tables WHERE tablename IN ('coupons', 'holds')"
        )
    finally:
        await connection.close()
    assert left == []  # both ceilings' tables dropped
    assert service == 2  # the service's own tables left alone


async def test_duplicates_are_all_already_claimed_here_and_on_the_single_store(gateway, settings):
    code, out = await bench(
        "duplicates",
        *("--base-url", gateway, *stores(settings)),
        *("--requests", "200", "--users", "20", "--stock", "40", "--concurrency", "40"),
        *("--ceiling-seconds", "0.3", "--json"),
    )
    report = json.loads(out)
    assert code == 0, report["problems"]
    # The 20 holders claimed first (not measured); every measured request was a repeat.
    assert (report["requests"], report["statuses"]) == (200, {"409": 200})
    assert (report["correct"], report["problems"]) == (True, [])
    assert report["ratios"]["requests_per_second_to_bare_gateway"] > 0
    assert report["single_store"]["statuses"] == {"409": 200}
    assert report["single_store"]["correct"] is True
    assert report["cpu"]["ms_per_successful_claim"] is None
    assert report["not_measured"]["cpu_ms_per_successful_claim"] == "no successful claims"
    assert report["cpu"]["ms_per_request"]["machine"] > 0


async def test_double_dip_sends_exactly_the_requests_asked_for(gateway, settings):
    code, out = await bench(
        "double-dip",
        *("--base-url", gateway, "--database-url", "", "--mongo-url", "", "--redis-url", ""),
        *("--requests", "45", "--users", "10", "--stock", "5", "--concurrency", "10"),
        *("--ceiling-seconds", "0.3", "--json"),
    )
    report = json.loads(out)
    assert code == 0, report["problems"]
    assert report["requests"] == 45  # 10 users: five try 5 times, five 4 times
    assert sum(report["statuses"].values()) == 45
    assert report["statuses"]["200"] == 5


NO_STORES = ("--database-url", "", "--mongo-url", "", "--redis-url", "")
# Says it is ready, waits for a line, then runs a child that burns CPU and exits, reaps
# it, and prints the CPU seconds its reaped children used (getrusage).
_PARENT_OF_A_SHORT_CHILD = """
import resource, subprocess, sys
print("ready", flush=True)
sys.stdin.readline()
subprocess.run([sys.executable, "-c", "sum(range(20_000_000))"], check=True)
children = resource.getrusage(resource.RUSAGE_CHILDREN)
print(children.ru_utime + children.ru_stime, flush=True)
sys.stdin.readline()
"""


def test_the_cpu_of_a_child_that_exited_stays_in_its_role():
    """A PostgreSQL backend or a worker that exits mid-run is still counted: its CPU
    moves into its parent's reaped-children time, which the role sums."""
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT_OF_A_SHORT_CHILD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdin and parent.stdout
    try:
        assert parent.stdout.readline() == "ready\n"
        roles = [gateway_started(parent.pid)]
        before = sample(roles)
        parent.stdin.write("go\n")
        parent.stdin.flush()
        child_seconds = float(parent.stdout.readline())
        assert descendants({parent.pid}, processes()) == {parent.pid}  # the child is gone
        used = usage(roles, before, sample(roles))
        assert child_seconds > 0.1  # enough work to be far above one clock tick
        tick = 1 / TICKS_PER_SECOND
        assert used["gateway"] is not None and used["gateway"] >= child_seconds - 2 * tick
        assert used["machine"] >= used["gateway"] - 2 * tick
    finally:
        parent.communicate("stop\n")


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
    code, out = await bench("read", "--base-url", gateway, *NO_STORES, *READ_SMALL, "--json")
    report = json.loads(out)
    assert (code, report["statuses"]) == (0, {"200": 50})
    # Checked for real: the 300 claims made first are the coupon's claimants, once each.
    assert (report["correct"], report["problems"]) == (True, [])
    assert report["ceilings"]["hot_row_tx_per_second"] is None  # no database: no hot-row ceiling
    assert report["worker_rss_mib"] is None
    assert report["not_measured"]["worker_rss_mib"] == "gateway not started by bench"
    assert report["not_measured"]["hot_row_tx_per_second"] == "no --database-url"


async def test_the_table_says_what_was_not_measured_and_why(gateway):
    code, out = await bench("read", "--base-url", gateway, *NO_STORES, *READ_SMALL)
    assert code == 0
    rows = dict(line.split("  ", 1) for line in out.splitlines() if "  " in line)
    rows = {label.strip(): value.strip() for label, value in rows.items()}
    assert rows["worker RSS MiB"] == "not measured (gateway not started by bench)"
    assert rows["hot-row tx/s (ceiling)"] == "not measured (no --database-url)"
    assert rows["floor p99 ms (UPDATE+SET)"] == "not measured (flash-sale only)"
    assert rows["hold-insert tx/s (ceiling)"] == "not measured (claim-rate only)"
    assert rows["single-store floor"] == "not measured (a read scenario makes no claims)"
    assert rows["CPU ms/claim"] == "not measured (no successful claims)"
    # A store bench was given no URL for is not found, never guessed by name.
    assert "redis not found (no --redis-url)" in rows["CPU ms/request"]
    assert "mongodb not found (no --mongo-url)" in rows["CPU ms/request"]
    assert "gateway not found" not in rows["CPU ms/request"]  # found by its port
    assert rows["correct"] == "yes"
    assert "None" not in out and "[]" not in out


async def test_help_says_what_read_does_first_and_runs_from_any_directory(tmp_path):
    code, out = await bench("--help", cwd=tmp_path)  # the installed package, not ./bench
    assert code == 0
    assert "first makes --stock claims" in out
    assert "read" in out and "(100 / 10000 / 10000 / 4)" in out
    assert "duplicates" in out and "(20000 / 100 / 1000 / 200)" in out
    assert "none is time-boxed" in out


def test_devstack_runs_from_any_directory(tmp_path):
    found = subprocess.run(
        [sys.executable, "-m", "devstack.ferretdb"], cwd=tmp_path, capture_output=True, text=True
    )
    assert found.returncode == 0, found.stderr
    assert Path(found.stdout.strip()).exists()  # FerretDB's binary, built or cached
