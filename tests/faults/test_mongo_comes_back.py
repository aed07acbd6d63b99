"""FerretDB killed under a steady stream of claims and started again: every worker's
MongoDB client comes back (issue 21, defect 3).

With short timings a gateway was seen to stay "mongodb does not answer" for minutes after
FerretDB was back, while a fresh client pinged it at once; only a restart cured it. Here
the gateway (two workers) runs on stores of the test's own — its own FerretDB, which the
test kills, and its own PostgreSQL database, so its hold settlement touches no other
test's holds — and must, once FerretDB answers again, be ready in every worker, take new
claims, and leave no unit held.

The gateway reaches FerretDB through a door (a TCP proxy) the test shuts while FerretDB is
away and opens once FerretDB has loaded its catalogue: FerretDB 1.24.2 loads it at the
first request after a start, under that request's deadline, and one that runs out mid-load
leaves it with none until it is restarted again (services/failures.py). The gateway's
first requests after an outage carry the few milliseconds left of theirs: under stress-ng
that happened 2 runs of 6, and the test then measured FerretDB, not the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import asyncpg
from pymongo import AsyncMongoClient

from tests.support.apart import (
    StoppableFerretDB,
    ferretdb_apart,
    postgres_database_apart,
    saga_log_apart,
)
from tests.support.api import create
from tests.support.cli import coupon_saga
from tests.support.processes import descendants
from tests.support.proxy import ProxyInThread
from tests.support.servers import gateway_process, process_group
from tests.support.settings import changed
from tests.support.steady_load import SteadyClaims
from tests.support.waiting import eventually

# The timings, but for the step timeout: its 1.5 s is refused at start now (a step
# must leave PyMongo a second past its own deadline); this is the shortest allowed.
SHORT_TIMINGS = {
    "saga_lease_seconds": 3.0,
    "saga_retry_seconds": 2.0,
    "store_timeout_seconds": 1.0,
    "step_timeout_seconds": 2.0,
    "hold_settle_seconds": 8.0,
    "recovery_interval_seconds": 0.5,
    # An outage of many leases parks no saga for an operator: the test is about the client.
    "saga_max_recoveries": 50,
}
RATE = 150.0  # claims a second, each by a new user
STOCK = 1_000_000  # never sold out: every claim runs its saga
OUTAGE_ANSWERS = 1500  # 503s told while FerretDB is away (about ten seconds of the stream)
COMES_BACK_GUARD_SECONDS = 60.0  # far above a few store timeouts and a probe interval


async def stores_up_in_every_worker(
    http: aiohttp.ClientSession, base: str, seen: dict[str, object]
) -> bool:
    """`store_up` for MongoDB is the lowest over the live workers: 1 once each worker's
    own probe got an answer."""
    async with http.get(f"{base}/metrics") as response:
        text = await response.text()
    up = 'store_up{store="mongodb"} 1.0' in text
    seen["mongodb up in every worker"] = up
    return up


async def ready(http: aiohttp.ClientSession, base: str, seen: dict[str, object]) -> bool:
    async with http.get(f"{base}/ready") as response:
        seen["ready"] = (response.status, await response.text())
        return response.status == 200


class FreshClaims:
    """Claims by users nobody used, each on a new connection (so either worker may take it)."""

    def __init__(self, http: aiohttp.ClientSession, base: str, coupon: str) -> None:
        self._http, self._base, self._coupon = http, base, coupon
        self._count = 0

    async def stands(self) -> bool:
        self._count += 1
        user = f"back_{self._count}"
        async with self._http.post(
            f"{self._base}/api/coupons/claim", json={"user_id": user, "coupon_name": self._coupon}
        ) as response:
            return response.status == 200


async def until(
    check: Callable[[], Awaitable[bool]], guard_seconds: float, what: Callable[[], str]
) -> float:
    """Poll `check` until it holds; fail past the guard, saying `what()` was seen last.
    Returns the seconds it took."""
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > guard_seconds:
            raise AssertionError(f"{what()}: not within {guard_seconds:.0f}s")
        await asyncio.sleep(0.2)  # the poll interval
    return time.monotonic() - started


def worker_rss_kib(base: str) -> dict[int, int]:
    """Resident memory of each gateway process (main and workers), in KiB, from /proc."""
    group = process_group(base)
    found = {}
    for pid in {group, *descendants(group)}:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    found[pid] = int(line.split()[1])
    return found


async def units_held(database_url: str) -> int:
    connection = await asyncpg.connect(database_url)
    try:
        return await connection.fetchval("SELECT count(*) FROM holds WHERE status = 'held'")
    finally:
        await connection.close()


@contextlib.asynccontextmanager
async def door_to(ferretdb: StoppableFerretDB) -> AsyncIterator[ProxyInThread]:
    """On a loop of its own: starting the gateway blocks the test's loop."""
    door = await asyncio.to_thread(ProxyInThread, ferretdb.url)
    try:
        yield door
    finally:
        await asyncio.to_thread(door.close)


async def crash(ferretdb: StoppableFerretDB, door: ProxyInThread) -> None:
    """kill -9; the door shut too, so the gateway finds nothing listening, as after a crash."""
    await ferretdb.kill()
    await asyncio.to_thread(door.cut)


async def start_again(ferretdb: StoppableFerretDB, door: ProxyInThread, database: str) -> None:
    """Started, its catalogue loaded by a request with time to spare, then the door opened."""
    await ferretdb.start()
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(ferretdb.url, timeoutMS=30_000)
    try:
        await client[database]["claims"].find_one({})
    finally:
        await client.close()
    await asyncio.to_thread(door.restore)


@contextlib.asynccontextmanager
async def new_connections() -> AsyncIterator[aiohttp.ClientSession]:
    """A session that opens a connection per request: each may reach either worker."""
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        yield session


async def test_every_worker_takes_claims_again_once_ferretdb_is_back(
    http, settings, tmp_path, name, redis
):
    async with (
        saga_log_apart(settings) as apart,
        postgres_database_apart(settings.database_url) as database_url,
        ferretdb_apart(settings.database_url, tmp_path) as ferretdb,
        door_to(ferretdb) as door,
    ):
        mongo_url = door.proxy.url_through(ferretdb.url)
        gateway_settings = changed(
            apart.settings,
            {**SHORT_TIMINGS, "database_url": database_url, "mongo_url": mongo_url},
        )
        with gateway_process(gateway_settings, tmp_path / "gateway.log", workers=2) as base:
            await create(http, base, name, STOCK)
            redis_before = (await redis.info("memory"))["used_memory"]
            async with (
                new_connections() as fresh,
                SteadyClaims(http, base, name, RATE).running() as load,
            ):
                await eventually(lambda: _at_least(load.statuses, 200, 300))
                rss_before = worker_rss_kib(base)

                await crash(ferretdb, door)
                told_503 = load.statuses[503]
                await eventually(
                    lambda: _at_least(load.statuses, 503, told_503 + OUTAGE_ANSWERS), tries=100_000
                )
                await start_again(ferretdb, door, gateway_settings.mongo_db)

                claims = FreshClaims(fresh, base, name)
                seen: dict[str, object] = {}

                async def back() -> bool:
                    return (
                        await ready(fresh, base, seen)
                        and await stores_up_in_every_worker(fresh, base, seen)
                        and all([await claims.stands() for _ in range(8)])
                    )

                took = await until(
                    back, COMES_BACK_GUARD_SECONDS, lambda: f"every worker back; last seen {seen}"
                )
            print(f"back {took:.1f}s after FerretDB was; answers {dict(load.statuses)}")

            await until(
                lambda: _none_held(database_url), COMES_BACK_GUARD_SECONDS, lambda: "no unit held"
            )
            rss_after = worker_rss_kib(base)
            redis_after = (await redis.info("memory"))["used_memory"]
            print(f"RSS KiB before {rss_before} after {rss_after}")
            print(f"redis used_memory before {redis_before} after {redis_after}")
            # Every claim answered, none with a 500 (0: no answer within the hang guard).
            assert set(load.statuses) <= {200, 503}, load.statuses

        code, out, _ = await coupon_saga(gateway_settings, "audit", "--coupon", name)
        assert code == 0, out


async def _at_least(statuses, status: int, count: int) -> bool:
    return statuses[status] >= count


async def _none_held(database_url: str) -> bool:
    return await units_held(database_url) == 0
