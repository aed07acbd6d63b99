"""kill -9 of the gateway right after each saga step; a restarted gateway recovers the saga.

These tests count on what the stores acknowledged surviving the crash, so they run on
stores that keep it (fsync on): the session's PostgreSQL does not.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from devstack.stack import StackUrls
from orchestrator.settings import Settings
from sagas.records import SagaRecord, SagaStatus
from services.claims import MongoClaims
from services.inventory_schema import apply_schema
from services.mongo_client import CurrentMongoClient
from tests.support.apart import saga_log_apart
from tests.support.api import claim, claim_all_tolerant, create, details
from tests.support.cli import coupon_saga
from tests.support.faulty_gateway import Fault
from tests.support.invariants import assert_invariants
from tests.support.logs import json_lines
from tests.support.servers import gateway_process, kill_9
from tests.support.settings import changed
from tests.support.waiting import FAST_RECOVERY, all_ended, eventually, held_at_least


@pytest.fixture(scope="module")
def settings(settings: Settings, durable_stack: StackUrls) -> Settings:
    """The session's settings on the durable stores."""
    return changed(
        settings, {"database_url": durable_stack.database_url, "mongo_url": durable_stack.mongo_url}
    )


# Pools of the test's own, without the service's store timeouts: a count that takes
# seconds on a busy machine is slow, not a failure.
@pytest.fixture(scope="module")
async def pg(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=4)
    await apply_schema(pool)
    yield pool
    await pool.close()


@pytest.fixture(scope="module")
async def mongo(settings: Settings) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongo_url, tz_aware=True)
    await MongoClaims(CurrentMongoClient(client, settings.mongo_db)).ensure_indexes()
    yield client[settings.mongo_db]
    await client.close()


async def finished_saga(pg, saga_log, coupon: str, user: str) -> SagaRecord:
    """The user's saga once it reached a final status."""
    found: list[SagaRecord] = []

    async def finished() -> bool:
        saga_id = await pg.fetchval(
            "SELECT saga_id::text FROM holds WHERE coupon_name = $1 AND user_id = $2", coupon, user
        )
        record = saga_id and await saga_log.load(saga_id)
        if record and not record.status.in_flight:
            found.append(record)
        return bool(found)

    await eventually(finished)
    return found[0]


@pytest.mark.parametrize(
    ("step", "outcome", "claimed_by", "answered"),
    [
        ("reserve", SagaStatus.COMPENSATED, [], False),
        ("record", SagaStatus.COMPLETED, ["victim"], False),  # killed before it could stand
        ("confirm", SagaStatus.COMPLETED, ["victim"], True),  # answered at the pivot
    ],
)
async def test_a_saga_cut_by_kill_9_ends_on_restart(
    http, settings, pg, mongo, tmp_path, name, step, outcome, claimed_by, answered
):
    async with saga_log_apart(settings) as apart:
        dying = changed(apart.settings, FAST_RECOVERY)
        killing = Fault.kill_after(step)
        with gateway_process(dying, tmp_path / "dying.log", workers=1, fault=killing) as base:
            await create(http, base, name, 2)
            if answered:
                assert (await claim(http, base, "victim", name))[0] == 200
            else:
                with pytest.raises(aiohttp.ClientError):
                    await claim(http, base, "victim", name)

        restarted = changed(apart.settings, FAST_RECOVERY)
        with gateway_process(restarted, tmp_path / "restarted.log", workers=1) as base:
            record = await finished_saga(pg, apart.saga_log, name, "victim")
            assert record.status is outcome, record.error
            assert record.recoveries >= 1
            coupon = await details(http, base, name)
        assert coupon["claimed_by"] == claimed_by
        assert coupon["remaining_amount"] + len(claimed_by) == 2
        await assert_invariants(pg, mongo, name)
        assert (await coupon_saga(apart.settings, "audit", "--coupon", name))[0] == 0


async def test_kill_9_under_load_then_recovery_keeps_every_invariant(
    http, settings, pg, mongo, tmp_path, name
):
    """2,000 claims by 1,000 users for 300 units; the gateway dies halfway through."""
    stock, users = 300, [f"user_{n}" for n in range(1000)]
    attempts = [(user, name) for user in users * 2]
    random.Random(7).shuffle(attempts)
    async with saga_log_apart(settings) as apart:
        fast = changed(apart.settings, FAST_RECOVERY)
        with gateway_process(fast, tmp_path / "a.log") as base:
            await create(http, base, name, stock)
            results = asyncio.ensure_future(claim_all_tolerant(http, base, attempts))
            await eventually(lambda: held_at_least(pg, name, 100))
            kill_9(base)
            answered = await results

        started = time.monotonic()
        recovering_log = tmp_path / "b.log"
        with gateway_process(fast, recovering_log) as base:
            await eventually(lambda: all_ended(pg, apart.saga_log, name))
            print(f"recovery ended every saga in {time.monotonic() - started:.1f}s")
            coupon = await details(http, base, name)

        facts = await assert_invariants(pg, mongo, name)
        winners = {body["user_id"] for status, body in answered if status == 200}
        assert winners <= set(facts.claims.values())  # every 200 the clients saw is a claim
        assert len(coupon["claimed_by"]) == len(set(coupon["claimed_by"])) <= stock
        assert coupon["remaining_amount"] + len(coupon["claimed_by"]) == stock
        code, out, _ = await coupon_saga(apart.settings, "audit", "--coupon", name)
        assert code == 0, out
        assert_each_recovery_logged_once_under_its_saga(recovering_log)


def assert_each_recovery_logged_once_under_its_saga(log_path) -> None:
    recovered = [line for line in json_lines(log_path) if "recovered" in line["message"]]
    assert recovered  # the dead gateway left sagas in flight
    for line in recovered:
        assert line["saga_id"] in line["message"], line
    messages = Counter(line["message"] for line in recovered)
    assert messages.most_common(1)[0][1] == 1, messages.most_common(3)
