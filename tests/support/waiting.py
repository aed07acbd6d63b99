"""Waiting, within generous bounds, for sagas to settle; and settings that make it quick.

Waits poll for a behaviour (a row count, an empty index), never for a wall-clock time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from sagas.ports import SagaLog

# A stuck saga is taken over 3 s after its driver's last write, looked for 5x a second; a
# step is retried for 2 s, two store timeouts (the settings' rules: the lease outlasts the
# retries, which outlast two store timeouts).
FAST_RECOVERY = {
    "saga_lease_seconds": 3.0,
    "recovery_interval_seconds": 0.2,
    "saga_retry_seconds": 2.0,
    "store_timeout_seconds": 1.0,
}


async def eventually(check: Callable[[], Awaitable[bool]], tries: int = 1200) -> None:
    """Poll `check` (a coroutine function) until it holds; fail after `tries` polls."""
    for _ in range(tries):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{check} never held")


async def held_at_least(pg: asyncpg.Pool, coupon: str, count: int) -> bool:
    """Whether at least `count` sagas of the coupon have reached PostgreSQL (any hold status)."""
    return await pg.fetchval("SELECT count(*) FROM holds WHERE coupon_name = $1", coupon) >= count


async def all_ended(pg: asyncpg.Pool, saga_log: SagaLog, coupon: str) -> bool:
    """Every saga in the log has ended, and no unit of the coupon is still held.

    The log must be the test's own (tests/support/apart.py): it is read whole. "Nothing
    stuck" is not the end: a saga still compensating under a live lease is not stuck.
    """
    if await sagas_in_flight(saga_log):
        return False
    return await none_held(pg, coupon)


async def none_held(pg: asyncpg.Pool, coupon: str) -> bool:
    """No unit of the coupon is held: each saga that took one confirmed it or gave it back
    (a claim is answered at its pivot, before its confirm)."""
    held = await pg.fetchval(
        "SELECT count(*) FROM holds WHERE coupon_name = $1 AND status = 'held'", coupon
    )
    return held == 0


async def sagas_in_flight(saga_log: SagaLog) -> set[str]:
    """Ids of the sagas still running or compensating."""
    return {record.saga_id for record in await saga_log.find(None, None) if record.status.in_flight}


async def wait_until_blocked_by(
    pg: asyncpg.Pool, blocker_pid: int, waiter: asyncio.Future[Any], queued: int = 1
) -> None:
    """Return once `queued` backends wait behind a lock that backend `blocker_pid` holds,
    directly or queued behind another waiter (or once `waiter` ends)."""
    behind = """
        WITH RECURSIVE behind(pid) AS (
            SELECT pid FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))
            UNION
            SELECT waiting.pid FROM pg_stat_activity waiting
            JOIN behind ON behind.pid = ANY(pg_blocking_pids(waiting.pid))
        ) SELECT count(*) FROM behind
    """
    while not waiter.done():
        if await pg.fetchval(behind, blocker_pid) >= queued:
            return
        await asyncio.sleep(0.01)


async def within(seconds: float, check: Callable[[], Awaitable[bool]]) -> float:
    """Poll `check` until it holds, failing if that takes longer than `seconds` (a bound the
    service promises, not a guess at how long something takes). Returns the time taken."""
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > seconds:
            raise AssertionError(f"{check} did not hold within {seconds:.1f}s")
        await asyncio.sleep(0.05)
    return time.monotonic() - started
