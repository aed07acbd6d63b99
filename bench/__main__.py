"""`python -m bench SCENARIO`: run a load scenario, check correctness, report with ceilings.

Without --base-url it starts throw-away stores and a `coupon-service` (WORKERS=2) of its
own, as the tests do. Exit code 1 when the run's correctness check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp

from bench.ceilings import bare_gateway_rate, floor_latency, hot_row_rate
from bench.load import LoadResult, fire
from bench.scenarios import SCENARIOS, Scenario, Shape, check, check_read, coupon_name

_EPILOG = """scenarios (default shape: requests / users / stock / concurrency):
{scenarios}

`read` first makes --stock claims (one per user) and then reads the coupon: with the
default shape, 10,000 claims before the 100 reads. Pointed at a gateway it did not
start (--base-url), bench cannot see the workers' memory; without --database-url it
measures no hot-row ceiling. What was not measured is said so, with why."""


def _parser() -> argparse.ArgumentParser:
    scenarios = "\n".join(
        f"  {s.name:<11} {s.describe} ({s.default.requests} / {s.default.users} / "
        f"{s.default.stock} / {s.default.concurrency})"
        for s in SCENARIOS.values()
    )
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__.splitlines()[0],
        epilog=_EPILOG.format(scenarios=scenarios),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("scenario", choices=SCENARIOS)
    parser.add_argument("--requests", type=int)
    parser.add_argument("--users", type=int)
    parser.add_argument("--stock", type=int)
    parser.add_argument("--concurrency", type=int)
    parser.add_argument("--base-url", help="a running gateway (default: start one)")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL"))
    parser.add_argument("--workers", type=int, default=2, help="for the gateway started here")
    parser.add_argument("--ceiling-seconds", type=float, default=3.0)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


@contextlib.contextmanager
def _local_gateway(workers: int) -> Iterator[tuple[str, str, str, subprocess.Popen[bytes]]]:
    from devstack.servers import free_port
    from devstack.stack import running_stack

    with running_stack() as urls:
        port = free_port()
        log = Path(tempfile.mkdtemp(prefix="bench-")) / "gateway.log"
        env = {
            **os.environ,
            **urls.as_env(),
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "WORKERS": str(workers),
            "LOG_LEVEL": "warning",
        }
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "orchestrator"], env=env, stdout=out, stderr=out
            )
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_healthy(base, process)
            yield base, urls.database_url, urls.redis_url, process
        finally:
            process.terminate()
            process.wait(timeout=60)


def _wait_healthy(base: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("the gateway exited while starting")
        with contextlib.suppress(OSError), urllib.request.urlopen(f"{base}/health", timeout=1):
            return
        time.sleep(0.1)
    raise SystemExit("the gateway did not become healthy")


def _worker_rss_mib(process: subprocess.Popen[bytes] | None) -> list[float] | None:
    """Resident memory of the gateway's processes that serve (its workers, or itself);
    None for a gateway bench did not start (its processes are not ours to look at)."""
    if process is None:
        return None
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
    pids = [int(pid) for pid in children.read_text().split()] if children.exists() else []
    rss = []
    for pid in pids or [process.pid]:
        status = Path(f"/proc/{pid}/status").read_text()
        kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
        rss.append(round(kib / 1024, 1))
    return rss


async def _api(base: str, method: str, path: str, body: Any = None) -> Any:
    async with aiohttp.ClientSession(base) as http, http.request(method, path, json=body) as r:
        if r.status >= 300:
            raise SystemExit(f"{method} {path}: {r.status} {await r.text()}")
        return await r.json()


async def run(
    args: argparse.Namespace,
    base: str,
    database_url: str | None,
    redis_url: str | None,
    gateway: Any,
) -> int:
    scenario = SCENARIOS[args.scenario]
    default = scenario.default
    shape = Shape(
        args.requests or default.requests,
        args.users or default.users,
        default.stock if args.stock is None else args.stock,
        args.concurrency or default.concurrency,
    )
    coupon = coupon_name(scenario.name)
    await _api(base, "POST", "/api/coupons", {"name": coupon, "amount": shape.stock})
    if not scenario.claims:  # a read scenario reads a coupon that has its claimants
        claims = [("POST", "/api/coupons/claim", {"user_id": f"u{n}", "coupon_name": coupon})
                  for n in range(shape.stock)]  # fmt: skip
        await fire(base, claims, concurrency=64, label="claimants")
    load = await fire(
        base,
        scenario.requests(coupon, shape),
        concurrency=shape.concurrency,
        label=scenario.name,
        keep_bodies=scenario.claims,
    )
    rss = _worker_rss_mib(gateway)
    state = await _api(base, "GET", f"/api/coupons/{coupon}")
    problems = (check if scenario.claims else check_read)(shape, load, state)
    hot_row = (
        await hot_row_rate(database_url, shape.concurrency, args.ceiling_seconds)
        if database_url
        else None
    )
    bare = await bare_gateway_rate(base, shape.concurrency, min(shape.requests, 20_000))
    floor = None
    if scenario.name == "flash-sale" and database_url and redis_url:
        floor = await floor_latency(
            database_url, redis_url, shape.requests, shape.concurrency, args.workers
        )
    report = _report(scenario, shape, load, hot_row, bare, floor, rss, problems)
    report["not_measured"] = _not_measured(scenario, report, gateway, database_url, redis_url)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_table(report)
    return 1 if problems else 0


def _report(
    scenario: Scenario,
    shape: Shape,
    load: LoadResult,
    hot_row: float | None,
    bare: float,
    floor: LoadResult | None,
    rss: list[float] | None,
    problems: list[str],
) -> dict[str, Any]:
    # A read scenario's 200s are reads, not claims.
    claimed = load.statuses.get(200, 0) if scenario.claims else 0
    claims_per_second = claimed / load.seconds if load.seconds else 0.0
    floor_p99 = floor.percentile(0.99) if floor else None
    ms = {f"p{int(f * 100)}": round(load.percentile(f) * 1000, 2) for f in (0.5, 0.9, 0.99)}
    return {
        "scenario": scenario.name,
        "shape": vars(shape),
        "seconds": round(load.seconds, 3),
        "requests_per_second": round(load.per_second),
        "successful_claims_per_second": round(claims_per_second),
        "latency_ms": {**ms, "max": round(max(load.latencies, default=0) * 1000, 2)},
        "statuses": dict(sorted(load.statuses.items())),
        "ceilings": {
            "hot_row_tx_per_second": round(hot_row) if hot_row else None,
            "bare_gateway_requests_per_second": round(bare),
            "floor_p99_ms": round(floor_p99 * 1000, 2) if floor_p99 else None,
        },
        "ratios": {
            "claims_per_second_to_hot_row": round(claims_per_second / hot_row, 3)
            if hot_row and scenario.claims
            else None,
            "requests_per_second_to_bare_gateway": round(load.per_second / bare, 3),
            "p99_to_floor_p99": round(load.percentile(0.99) / floor_p99, 3) if floor_p99 else None,
        },
        "worker_rss_mib": rss,
        "correct": not problems,
        "problems": problems,
    }


def _not_measured(
    scenario: Scenario,
    report: dict[str, Any],
    gateway: Any,
    database_url: str | None,
    redis_url: str | None,
) -> dict[str, str]:
    """Why each figure left out (None) was not measured, by the figure's name."""
    reasons = {}
    if gateway is None:
        reasons["worker_rss_mib"] = "gateway not started by bench"
    if not database_url:
        reasons["hot_row_tx_per_second"] = "no --database-url"
    if not scenario.claims:
        reasons["claims_per_second_to_hot_row"] = "a read scenario makes no claims"
    elif not database_url:
        reasons["claims_per_second_to_hot_row"] = "no --database-url"
    if scenario.name != "flash-sale":
        reasons["floor_p99_ms"] = reasons["p99_to_floor_p99"] = "flash-sale only"
    elif not (database_url and redis_url):
        reasons["floor_p99_ms"] = reasons["p99_to_floor_p99"] = (
            "needs --database-url and --redis-url"
        )
    return reasons


def _print_table(report: dict[str, Any]) -> None:
    ceilings, ratios = report["ceilings"], report["ratios"]
    correct = "yes" if report["correct"] else "NO: " + "; ".join(report["problems"])
    # (label, value, the figure's name where it may be left unmeasured)
    rows: list[tuple[str, Any, str]] = [
        ("scenario", report["scenario"], ""),
        ("shape", ", ".join(f"{k}={v}" for k, v in report["shape"].items()), ""),
        ("requests/s", report["requests_per_second"], ""),
        ("successful claims/s", report["successful_claims_per_second"], ""),
        ("latency ms", ", ".join(f"{k}={v}" for k, v in report["latency_ms"].items()), ""),
        ("statuses", ", ".join(f"{k}: {v}" for k, v in report["statuses"].items()), ""),
        ("hot-row tx/s (ceiling)", ceilings["hot_row_tx_per_second"], "hot_row_tx_per_second"),
        ("bare /health req/s", ceilings["bare_gateway_requests_per_second"], ""),
        (
            "claims/s ÷ hot row",
            ratios["claims_per_second_to_hot_row"],
            "claims_per_second_to_hot_row",
        ),
        ("req/s ÷ bare gateway", ratios["requests_per_second_to_bare_gateway"], ""),
        ("floor p99 ms (UPDATE+SET)", ceilings["floor_p99_ms"], "floor_p99_ms"),
        ("p99 ÷ floor p99", ratios["p99_to_floor_p99"], "p99_to_floor_p99"),
        ("worker RSS MiB", report["worker_rss_mib"], "worker_rss_mib"),
        ("correct", correct, ""),
    ]
    width = max(len(label) for label, _, _ in rows)
    for label, value, name in rows:
        if name and value is None:
            value = f"not measured ({report['not_measured'].get(name, 'not available')})"
        print(f"{label:<{width}}  {value}")


def main() -> None:
    args = _parser().parse_args()
    if args.base_url:
        code = asyncio.run(run(args, args.base_url, args.database_url, args.redis_url, None))
    else:
        with _local_gateway(args.workers) as (base, database_url, redis_url, process):
            code = asyncio.run(run(args, base, database_url, redis_url, process))
    sys.exit(code)


if __name__ == "__main__":
    main()
