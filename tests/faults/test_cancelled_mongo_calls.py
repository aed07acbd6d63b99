"""Callers that give up on MongoDB calls while it is away leave its client working.

Issue 21: PyMongo on Python 3.11 waits for a server in `asyncio.wait_for`; cancelled while
that `wait_for` cancels its own timed-out wait, it releases a lock it no longer holds and
the client's topology stays locked for good. A saga step's timeout, the readiness probe
and a shutdown all give up on calls; the adapter must never pass that on to PyMongo.
(Calling PyMongo directly, this test left the client wedged 2 runs of 2.)
"""

from __future__ import annotations

import asyncio
import contextlib
import random

from orchestrator.bootstrap import mongo_client
from services.claims import MongoClaims
from tests.support.apart import ferretdb_apart
from tests.support.settings import changed
from tests.support.waiting import eventually

CALLERS, ROUNDS = 100, 6
# PyMongo's own deadline is 1 s; callers give up around it, when PyMongo is still in its
# half-second waits for a server.
GIVE_UP_AFTER = (1.0, 1.6)
# A hang guard: a caller whose timeout PyMongo swallowed would wait on the lock for good.
CALLERS_GUARD_SECONDS = 120.0


async def give_up_again_and_again(claims: MongoClaims, rng: random.Random) -> None:
    for _ in range(ROUNDS):
        with contextlib.suppress(Exception):  # the store is away: every call fails
            async with asyncio.timeout(rng.uniform(*GIVE_UP_AFTER)):
                await claims.exists("no-such-saga")


async def answers(claims: MongoClaims) -> bool:
    try:
        async with asyncio.timeout(5):
            await claims.exists("no-such-saga")
    except Exception:
        return False
    return True


async def test_calls_given_up_while_mongodb_is_away_leave_the_client_working(settings, tmp_path):
    async with ferretdb_apart(settings.database_url, tmp_path) as ferretdb:
        short = {"mongo_url": ferretdb.url, "store_timeout_seconds": 1.0, "step_timeout_seconds": 2}
        async with mongo_client(changed(settings, short)) as client:
            claims = MongoClaims(client)
            assert await answers(claims)

            await ferretdb.kill()
            rng = random.Random(21)
            async with asyncio.timeout(CALLERS_GUARD_SECONDS):
                await asyncio.gather(
                    *(give_up_again_and_again(claims, rng) for _ in range(CALLERS))
                )
            await ferretdb.start()

            await eventually(lambda: answers(claims), tries=12)
