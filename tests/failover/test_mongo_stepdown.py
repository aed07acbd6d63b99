"""A sale through a MongoDB replica set whose primary steps down in the middle of it
(`replSetStepDown`, what `rs.stepDown()` sends): the claims being recorded meet a member
that no longer takes writes, and the set elects another primary within seconds.

Every answer is judged against the stores once the sagas have ended (tests/support/sale.py):
no 500, every 200 a claim that stands, every plain 503 or 409 a claim that took nothing.
Invariants 1-4 hold, no saga is left for an operator and `coupon-saga audit` is clean.

It needs a real replica set, named by MONGO_REPLICA_SET_URL (with `replicaSet=`), and
skips without one. FerretDB, which the suite runs here, has no replica set: the hosted
CI's `mongo-replica-set` job starts three `mongo:7` members and runs it there.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

import pymongo.errors
import pytest
from pymongo import AsyncMongoClient

from tests.faults.test_store_outage import claims_database
from tests.support.apart import saga_log_apart
from tests.support.api import create, details
from tests.support.cli import coupon_saga
from tests.support.invariants import assert_invariants
from tests.support.sale import CUT, Sale, claimants, judge, outcomes
from tests.support.servers import gateway_process
from tests.support.settings import changed
from tests.support.waiting import all_ended, eventually

REPLICA_SET_URL = os.environ.get("MONGO_REPLICA_SET_URL", "")
pytestmark = pytest.mark.skipif(
    not REPLICA_SET_URL,
    reason="needs a MongoDB replica set in MONGO_REPLICA_SET_URL (FerretDB has none; "
    "the hosted CI's mongo-replica-set job runs this)",
)

USERS, STOCK, CONCURRENCY = 1200, 500, 60
STEP_DOWN_AT = USERS // 5  # answers before the primary steps down
HELD_BACK = USERS // 2  # claims sent before a new primary is elected; the rest after
# The old primary may not stand again for this long. It must be longer than the 10 s it
# waits for a secondary to catch up (secondaryCatchUpPeriodSecs), or the server refuses.
STEP_DOWN_SECONDS = 30


@contextlib.asynccontextmanager
async def replica_set() -> AsyncIterator[AsyncMongoClient[dict[str, Any]]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(REPLICA_SET_URL)
    try:
        yield client
    finally:
        await client.close()


async def primary(client: AsyncMongoClient[dict[str, Any]]) -> str | None:
    hello = await client.admin.command("hello")
    found: str | None = hello.get("primary")
    return found


async def step_down(client: AsyncMongoClient[dict[str, Any]]) -> str:
    """Make the primary step down; return the member it was."""
    old = await primary(client)
    assert old, "the replica set has no primary to step down"
    # The member drops the connections that were writing; the command's own answer may be
    # lost with them.
    with contextlib.suppress(pymongo.errors.AutoReconnect):
        await client.admin.command("replSetStepDown", STEP_DOWN_SECONDS)
    return old


async def test_a_sale_while_the_primary_steps_down(http, settings, pg, tmp_path, name):
    async with (
        saga_log_apart(changed(settings, {"mongo_url": REPLICA_SET_URL})) as apart,
        replica_set() as members,
    ):
        with gateway_process(apart.settings, tmp_path / "gateway.log") as base:
            await create(http, base, name, STOCK)
            sale = Sale(
                http, name, claimants(USERS), CONCURRENCY, lambda: base, held_back=HELD_BACK
            )
            selling = asyncio.ensure_future(sale.run())
            await eventually(sale.answered(STEP_DOWN_AT))

            old = await step_down(members)

            async def another_primary() -> bool:
                return (await primary(members)) not in (None, old)

            await eventually(another_primary)
            sale.healed.set()
            await selling

            await eventually(lambda: all_ended(pg, apart.saga_log, name))
            async with claims_database(REPLICA_SET_URL, apart.settings) as claims:
                facts = await assert_invariants(pg, claims, name)
            claimed_by = (await details(http, base, name))["claimed_by"]
            print(f"primary {old} stepped down: answers {dict(outcomes(sale.answers))}")
            verdict = judge(sale.answers, facts, claimed_by)  # no 500, every 200 stands
            assert CUT not in verdict.statuses
            assert verdict.false_answers == []
            assert len(facts.claims) == STOCK  # it sold out all the same
            parked = [s for s in await apart.saga_log.find(None, None) if not s.status.finished]
            assert parked == []
        code, out, _ = await coupon_saga(apart.settings, "audit", "--coupon", name)
        assert code == 0, out
