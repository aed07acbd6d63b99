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
from dataclasses import dataclass
from pathlib import Path

from bench.ceilings import (
    HOLD_TX_CLIENTS,
    bare_gateway_rate,
    floor_latency,
    hold_tx_rate,
    hot_row_rate,
)
from bench.counting_gateway import COUNTS_DIR
from bench.explain import Explainer, ferretdb_database
from bench.measure import Measured, measure
from bench.report import build, not_measured, print_table
from bench.roles import gateway_at, gateway_started, stack_roles
from bench.scenarios import SCENARIOS, Scenario, Shape, coupon_name
from bench.serving import spawned
from bench.single_store import forget
from devstack.servers import free_port

_EPILOG = """scenarios (default shape: requests / users / stock / concurrency):
{scenarios}

Every scenario sends exactly --requests requests (none is time-boxed).
`read` first makes --stock claims (one per user) and then reads the coupon: with the
default shape, 10,000 claims before the 100 reads. `duplicates` first has its --users
users claim the coupon; then every request is a repeat claim (all 409 already_claimed).

Claim scenarios run again, in the same run and with the same workers, against the
single-store floor (bench/single_store.py: one PostgreSQL transaction per claim), which
needs --database-url. CPU is read from /proc over the load and split by role (gateway,
PostgreSQL, MongoDB/FerretDB, Redis, the load generator, the rest of the machine); a
store is found by its URL's listening port, so without --mongo-url or --redis-url that
role is "not found". `claim-rate` also measures the hold-insert ceiling: BEGIN, insert a
row of its own, the guarded UPDATE of one hot row, COMMIT, from {clients} connections.
Pointed at a gateway it did not start (--base-url), bench cannot see the workers'
memory; without --database-url it measures neither the hot-row nor the hold-insert
ceiling. What was not measured is said so, with why."""


@dataclass(frozen=True)
class StoreUrls:
    database_url: str | None
    mongo_url: str | None
    redis_url: str | None


def _parser() -> argparse.ArgumentParser:
    scenarios = "\n".join(
        f"  {s.name:<11} {s.describe} ({s.default.requests} / {s.default.users} / "
        f"{s.default.stock} / {s.default.concurrency})"
        for s in SCENARIOS.values()
    )
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__.splitlines()[0],
        epilog=_EPILOG.format(scenarios=scenarios, clients=HOLD_TX_CLIENTS),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("scenario", choices=SCENARIOS)
    parser.add_argument("--requests", type=int)
    parser.add_argument("--users", type=int)
    parser.add_argument("--stock", type=int)
    parser.add_argument("--concurrency", type=int)
    parser.add_argument("--base-url", help="a running gateway (default: start one)")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    parser.add_argument("--mongo-url", default=os.environ.get("MONGO_URL"))
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL"))
    parser.add_argument("--workers", type=int, default=2, help="for the servers started here")
    parser.add_argument("--ceiling-seconds", type=float, default=3.0)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument(
        "--explain",
        action="store_true",
        help="count what a successful claim costs (store statements and commands, batches, "
        "system calls; and, in a gateway bench starts, log lines, metric updates, JSON, "
        "validations, tasks, futures): counts, not a run to time",
    )
    return parser


@contextlib.contextmanager
def _local_gateway(
    workers: int, counting: bool
) -> Iterator[tuple[str, StoreUrls, subprocess.Popen[bytes], Path | None]]:
    """`counting`: the gateway that counts its own calls (bench/counting_gateway.py), on
    a PostgreSQL that keeps statement statistics."""
    from devstack.stack import running_stack

    entry = "bench.counting_gateway" if counting else "orchestrator"
    with (
        running_stack(statement_stats=counting) as urls,
        tempfile.TemporaryDirectory(prefix="bench-counts-") as counts,
    ):
        port = free_port()
        log = Path(tempfile.mkdtemp(prefix="bench-")) / "gateway.log"
        env = {
            **os.environ,
            **urls.as_env(),
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "WORKERS": str(workers),
            "LOG_LEVEL": "warning",
            COUNTS_DIR: counts,
        }
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", entry], env=env, stdout=out, stderr=out
            )
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_healthy(base, process)
            stores = StoreUrls(urls.database_url, urls.mongo_url, urls.redis_url)
            yield base, stores, process, Path(counts) if counting else None
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


async def run(
    args: argparse.Namespace,
    base: str,
    urls: StoreUrls,
    gateway: subprocess.Popen[bytes] | None,
    counts_dir: Path | None = None,
) -> int:
    scenario = SCENARIOS[args.scenario]
    default = scenario.default
    shape = Shape(
        args.requests or default.requests,
        args.users or default.users,
        default.stock if args.stock is None else args.stock,
        args.concurrency or default.concurrency,
    )
    database_url, redis_url = urls.database_url, urls.redis_url
    found = gateway_started(gateway.pid) if gateway else gateway_at(base)
    roles = stack_roles(found, database_url, urls.mongo_url, redis_url)
    explainer = None
    if args.explain:
        by_name = {role.name: role for role in roles}
        explainer = Explainer(
            base,
            by_name["gateway"],
            database_url,
            redis_url,
            ferretdb_database(by_name["mongodb"]),
            counts_dir,
        )
    ours = await measure(base, scenario, shape, coupon_name(scenario.name), roles, explainer)
    rss = _worker_rss_mib(gateway)
    hot_row = (
        await hot_row_rate(database_url, shape.concurrency, args.ceiling_seconds)
        if database_url
        else None
    )
    hold_tx = None
    if scenario.name == "claim-rate" and database_url:
        hold_tx = await hold_tx_rate(database_url, args.ceiling_seconds)
    bare = await bare_gateway_rate(base, shape.concurrency, min(shape.requests, 20_000))
    floor = None
    if scenario.name == "flash-sale" and database_url and redis_url:
        floor = await floor_latency(
            database_url, redis_url, shape.requests, shape.concurrency, args.workers
        )
    single = None
    if scenario.claims and database_url:
        single = await _single_store(scenario, shape, urls, args.workers)
    report = build(scenario, shape, ours, hot_row, hold_tx, bare, floor, single, rss)
    report["not_measured"] = not_measured(
        scenario, report, gateway is not None, database_url, redis_url
    )
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
    return 1 if ours.problems or (single and single.problems) else 0


async def _single_store(
    scenario: Scenario, shape: Shape, urls: StoreUrls, workers: int
) -> Measured:
    """The same scenario against the single-store floor, with the same workers."""
    assert urls.database_url
    coupon = coupon_name(f"{scenario.name}-single-store")
    arguments = ("--workers", str(workers), "--database-url", urls.database_url)
    async with spawned("bench.single_store", free_port(), *arguments) as (base, pid):
        roles = stack_roles(
            gateway_started(pid, "single-store server"),
            urls.database_url,
            urls.mongo_url,
            urls.redis_url,
        )
        try:
            return await measure(base, scenario, shape, coupon, roles)
        finally:
            await forget(urls.database_url, coupon)


def main() -> None:
    args = _parser().parse_args()
    if args.base_url:
        urls = StoreUrls(args.database_url, args.mongo_url, args.redis_url)
        code = asyncio.run(run(args, args.base_url, urls, None))
    else:
        with _local_gateway(args.workers, args.explain) as (base, urls, process, counts):
            code = asyncio.run(run(args, base, urls, process, counts))
    sys.exit(code)


if __name__ == "__main__":
    main()
