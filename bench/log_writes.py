"""`python -m bench.log_writes --redis-url URL`: what REDIS_WAIT_REPLICAS costs one
saga-log write, alone on its connection (no batching to share it).

Against a Redis with a replica, it writes new sagas one after another, alternating rounds
without and with `WAIT 1 <timeout>` after each write (the service's own RedisSagaLog),
and prints each round's median and p99 round trip, and how many writes the replica did
not acknowledge in time. Its keys, under a prefix of its own, are deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

import redis.asyncio as aioredis

from sagas.records import SagaRecord, SagaStatus
from services.redis_keys import RedisKeys
from services.replica_wait import ReplicaWait
from services.saga_log import RedisSagaLog


class _Shortfalls:
    def __init__(self) -> None:
        self.writes = 0

    def short(self, writes: int, acknowledged: int, wanted: int) -> None:
        self.writes += writes

    def met(self) -> None:
        pass


def _saga() -> SagaRecord:
    now = time.time()
    return SagaRecord(
        saga_id=str(uuid.uuid4()),
        name="claim",
        payload={"user_id": "bench", "coupon_name": "BENCH"},
        status=SagaStatus.RUNNING,
        step="reserve",
        created_at=now,
        updated_at=now,
    )


async def _round(saga_log: RedisSagaLog, writes: int) -> list[float]:
    took = []
    for _ in range(writes):
        record = _saga()
        started = time.perf_counter()
        await saga_log.create(record, [])
        took.append(time.perf_counter() - started)
    return took


async def _measure(url: str, writes: int, rounds: int, timeout_ms: int) -> None:
    client = aioredis.Redis.from_url(url, decode_responses=True)
    keys = RedisKeys(f"bench-{uuid.uuid4().hex[:8]}:")
    try:
        for number in range(rounds):
            for replicas in (0, 1):
                shortfalls = _Shortfalls()
                saga_log = RedisSagaLog(
                    client,
                    keys=keys,
                    lease_seconds=60.0,
                    retention_seconds=3600,
                    replica_wait=ReplicaWait(replicas, timeout_ms, shortfalls),
                )
                await saga_log.warm_up(1)
                took = sorted(await _round(saga_log, writes))
                print(
                    f"round {number + 1}, REDIS_WAIT_REPLICAS={replicas}: "
                    f"median {statistics.median(took) * 1e6:.0f} us, "
                    f"p99 {took[int(len(took) * 0.99)] * 1e6:.0f} us, "
                    f"{shortfalls.writes} of {writes} writes not on the replica in time"
                )
    finally:
        found = [key async for key in client.scan_iter(match=f"{keys.prefix}*")]
        for start in range(0, len(found), 1000):
            await client.delete(*found[start : start + 1000])
        await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.log_writes", description=__doc__)
    parser.add_argument("--redis-url", required=True, help="a master with a replica")
    parser.add_argument("--writes", type=int, default=5000, help="per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--timeout-ms", type=int, default=100)
    args = parser.parse_args()
    asyncio.run(_measure(args.redis_url, args.writes, args.rounds, args.timeout_ms))


if __name__ == "__main__":
    main()
