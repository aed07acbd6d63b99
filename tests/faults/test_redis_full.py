"""Redis at maxmemory with noeviction: it refuses every write until memory frees.

The saga log is then unavailable, not broken: a claim whose first log write is refused
gets a 503 and nothing is touched; a claim past its pivot stands (200) and its outcome is
written once Redis has room again. A claim refused before any side effect (unknown coupon,
duplicate, no stock) keeps only a small record, briefly, so refusals cannot fill Redis.

Each test runs a Redis of its own, so filling it disturbs nobody else.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis
import redis.asyncio as aioredis

from devstack.servers import Server
from orchestrator.settings import Settings
from sagas.records import SagaStatus
from services.redis_keys import RedisKeys
from services.saga_log import RedisSagaLog
from tests.support.api import claim, claim_all, create
from tests.support.invariants import assert_invariants, read_facts
from tests.support.servers import app_in_process
from tests.support.settings import changed
from tests.support.waiting import FAST_RECOVERY, all_ended, eventually

ROOM_BYTES = 2_000_000  # maxmemory: what Redis holds when the test starts, plus this
FILLER = "x" * 10_000
REFUSED_RETENTION = 30
REFUSED_BYTES_BOUND = 1_536  # per refused claim (it used to be ~6 KB, for 7 days)


@pytest.fixture
async def full_redis(own_redis: Server) -> AsyncIterator[aioredis.Redis]:
    """A client of the test's Redis, which refuses writes once ROOM_BYTES are used."""
    client = aioredis.Redis.from_url(own_redis.url, decode_responses=True)
    used = (await client.info("memory"))["used_memory"]
    await client.config_set("maxmemory-policy", "noeviction")
    await client.config_set("maxmemory", used + ROOM_BYTES)
    yield client
    await client.aclose()


def on_own_redis(settings: Settings, server: Server, **changes: object) -> Settings:
    """The settings with the saga log on the test's Redis. Its gateway settles nobody's
    abandoned holds: every test's holds live in the one PostgreSQL."""
    return changed(settings, {"redis_url": server.url, "hold_settle_seconds": 3600.0, **changes})


def fill_until_refused(client: redis.Redis) -> int:
    """Write filler keys until Redis refuses one; returns how many it took.

    Then maxmemory is pinned a little below what is used: Redis refuses a write only while
    it is over its limit, and the few KB its client buffers give back would otherwise let
    the next small write in.
    """
    count = 0
    try:
        while True:
            client.set(f"filler:{count}", FILLER)
            count += 1
    except redis.exceptions.OutOfMemoryError:
        used = int(client.info("memory")["used_memory"])
        client.config_set("maxmemory", used - 50_000)
        return count


async def make_room(client: aioredis.Redis, fillers: int) -> None:
    """Delete that many fillers: room for about `fillers` x 10 KB, less the pinned margin."""
    await client.delete(*(f"filler:{n}" for n in range(fillers)))


async def took_nothing(pg, mongo, coupon: str, user_id: str) -> bool:
    """No hold row of any status and no claim document: the stores never saw the claim."""
    holds = await pg.fetchval(
        "SELECT count(*) FROM holds WHERE coupon_name = $1 AND user_id = $2", coupon, user_id
    )
    documents = await mongo.claims.count_documents({"coupon_name": coupon, "user_id": user_id})
    return holds == 0 and documents == 0


async def test_a_full_redis_refuses_claims_before_touching_anything(
    http, settings, pg, mongo, own_redis, full_redis, name
):
    full = on_own_redis(settings, own_redis)
    async with app_in_process(full) as base:
        await create(http, base, name, 5)
        with redis.Redis.from_url(own_redis.url) as filler:
            assert fill_until_refused(filler) > 0

        answers = await claim_all(http, base, [(f"user_{n}", name) for n in range(20)])

    assert {(status, body["error"]) for status, body in answers} == {(503, "unavailable")}
    for n in range(20):
        assert await took_nothing(pg, mongo, name, f"user_{n}")
    facts = await assert_invariants(pg, mongo, name)
    assert facts.remaining_amount == 5


async def test_a_claim_past_its_pivot_stands_when_redis_fills_up_and_is_logged_later(
    http, settings, pg, mongo, own_redis, full_redis, name
):
    """Redis fills up between the claim document and the outcome write: the client gets
    200, and once Redis has room again recovery writes the outcome."""
    fillers: list[int] = []
    filler = redis.Redis.from_url(own_redis.url)

    def fill_after_record(step: str) -> None:
        if step == "record" and not fillers:
            fillers.append(fill_until_refused(filler))

    full = on_own_redis(settings, own_redis, **FAST_RECOVERY)
    try:
        async with app_in_process(full, after_step=fill_after_record) as base:
            await create(http, base, name, 5)

            status, body = await claim(http, base, "lucky", name)

            assert (status, fillers != []) == (200, True), body
            facts = await read_facts(pg, mongo, name)
            (saga_id,) = facts.claims

            # Answered at its pivot: the confirm comes after the 200.
            async def confirmed() -> bool:
                facts = await read_facts(pg, mongo, name)
                return facts.holds[saga_id] == ("lucky", "confirmed")

            await eventually(confirmed)

            saga_key = RedisKeys(full.redis_key_prefix).saga(saga_id)
            logged = await full_redis.hget(saga_key, "status")
            assert logged == SagaStatus.RUNNING.value  # its outcome could not be written
            await make_room(full_redis, fillers[0])

            async def completed_in_the_log() -> bool:
                status = await full_redis.hget(saga_key, "status")
                return status == SagaStatus.COMPLETED.value

            await eventually(completed_in_the_log)
    finally:
        filler.close()
    await assert_invariants(pg, mongo, name)


async def test_a_burst_into_a_filling_redis_gets_only_true_answers(
    http, settings, pg, mongo, own_redis, full_redis, name
):
    """Room for a few sagas only: some claims get in, the rest are refused. No 500; every
    200 is a real claim; every 503 took nothing.

    A unit for every claim, so each one needs its saga's records: 200 of them (a few KB
    each) cannot all fit in about 100 KB, however the memory is counted.
    """
    full = on_own_redis(settings, own_redis, **FAST_RECOVERY)
    users = [f"user_{n}" for n in range(200)]
    async with app_in_process(full) as base:
        await create(http, base, name, len(users))
        with redis.Redis.from_url(own_redis.url) as filler:
            fillers = fill_until_refused(filler)
        await make_room(full_redis, 15)  # about 100 KB

        answers = await claim_all(http, base, [(user, name) for user in users])

        statuses = [status for status, _ in answers]
        print(f"answers: {statuses.count(200)} x 200, {statuses.count(503)} x 503")
        assert set(statuses) <= {200, 409, 503}
        assert 200 in statuses and 503 in statuses
        for user, status in zip(users, statuses, strict=True):
            if status == 503:
                assert await took_nothing(pg, mongo, name, user), user
        await make_room(full_redis, fillers)
        saga_log = RedisSagaLog(full_redis, lease_seconds=1.0, retention_seconds=60)
        await eventually(lambda: all_ended(pg, saga_log, name))

    facts = await assert_invariants(pg, mongo, name)
    winners = {user for user, status in zip(users, statuses, strict=True) if status == 200}
    assert set(facts.claims.values()) == winners


async def test_a_refused_claim_costs_little_redis_memory_and_only_briefly(
    http, settings, pg, own_redis, name
):
    """Unknown coupon, duplicate, out of stock: each refused claim keeps a small record
    for SAGA_REFUSED_RETENTION_SECONDS, without its history, in an index of its own."""
    client = aioredis.Redis.from_url(own_redis.url, decode_responses=True)
    refusing = on_own_redis(
        settings,
        own_redis,
        sold_out_memo_seconds=0.0,  # every out-of-stock claim runs its saga
        claimed_memo_entries=0,  # and every duplicate
        saga_refused_retention_seconds=REFUSED_RETENTION,
    )
    keys = RedisKeys(refusing.redis_key_prefix)
    try:
        async with app_in_process(refusing) as base:
            await create(http, base, name, 1)
            assert (await claim(http, base, "holder", name))[0] == 200

            async def holder_saga_ended() -> bool:  # it is answered at its pivot
                return await client.zcard(keys.in_flight) == 0

            await eventually(holder_saga_ended)
            before_keys = set(await client.keys(f"{keys.prefix}*"))

            refused = []
            for n in range(50):
                refused.append(await claim(http, base, f"user_{n}", name + "_unknown"))
                refused.append(await claim(http, base, "holder", name))  # a duplicate
                refused.append(await claim(http, base, f"user_{n}", name))  # no stock

            new_keys = set(await client.keys(f"{keys.prefix}*")) - before_keys - {keys.refused}
            # Each refusal's record, and its entry in the index of refusals.
            used = sum([await client.memory_usage(key) for key in [*new_keys, keys.refused]])
            ttls = [await client.ttl(key) for key in new_keys]
            indexed = [
                await client.zcard(index) for index in (keys.in_flight, keys.finished, keys.refused)
            ]
    finally:
        await client.aclose()

    assert {body["error"] for _, body in refused} == {
        "coupon_not_found",
        "already_claimed",
        "out_of_stock",
    }
    per_claim = used / len(refused)
    print(f"{per_claim:.0f} bytes of Redis per refused claim, for {REFUSED_RETENTION}s")
    assert per_claim <= REFUSED_BYTES_BOUND
    assert len(new_keys) == len(refused)  # one record each, no event stream
    assert all(0 < ttl <= REFUSED_RETENTION for ttl in ttls)
    # Listed among the refusals (trimmed by the same retention); the one finished saga is
    # the holder's claim.
    assert indexed == [0, 1, len(refused)]
