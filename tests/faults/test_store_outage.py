"""FerretDB is killed in the middle of a flash sale and started again with its data.

The claims keep coming through the outage. Each gets an answer in bounded time: 200, 409
or 503, never a 500 and never a hang. A 503 says "the outcome is unknown, try again": the
saga behind it may be left compensating with its unit held (the claim document might have
landed), or taken over by a recoverer while its driver was still retrying. Once FerretDB is
back, recovery settles every saga from the facts, and then no unit is lost, every 200 is a
real claim, and a claim whose client only ever saw 503s exists only because a recoverer
found its claim document and drove its saga forward.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from orchestrator.settings import Settings
from tests.support.apart import ferretdb_apart, saga_log_apart
from tests.support.api import create
from tests.support.cli import coupon_saga
from tests.support.invariants import CouponFacts, assert_invariants
from tests.support.servers import gateway_process
from tests.support.settings import changed
from tests.support.waiting import (
    FAST_RECOVERY,
    all_ended,
    eventually,
    held_at_least,
    sagas_in_flight,
)

STOCK, USERS, IN_FLIGHT = 300, 300, 40  # 600 claims, 40 at a time: stock left for the outage
OUTAGE = {
    **FAST_RECOVERY,
    # As with the defaults: the drivers time out first (a try is cut short by the engine
    # only when a driver fails to end it: cancelling PyMongo inside its server selection
    # was seen to leave its topology lock held, and every later call of that client hang),
    # and the retries span two store timeouts, so a try that timed out but landed late is
    # found by the next one, not undone too soon.
    "step_timeout_seconds": 2.0,
    "store_timeout_seconds": 1.0,
    "saga_retry_seconds": 2.0,
    "saga_lease_seconds": 3.0,
    # Every recovery during the outage fails and counts; the test is about the restart,
    # not about parking sagas for an operator (tests/faults/test_replay_verbs.py is).
    "saga_max_recoveries": 50,
}
HANG_GUARD_SECONDS = 60.0  # one claim: far above the retries and undo an outage costs


@dataclass(frozen=True)
class Answer:
    user_id: str
    status: int
    error: str
    saga_id: str  # X-Saga-Id, sent with a 200
    after_restart: bool


RETRY_AFTER_SECONDS = 1.0  # what the gateway's 503s say


class Burst:
    """The claims of a sale, IN_FLIGHT at a time, and the answers as they come.

    `before_restart`: no more claims than that are sent before `restarted` is set, so the
    sale goes on after the restart; sent all at once, the claims during the outage are
    refused as fast as they come (the gateway refuses claims while a store is away), or a
    fast gateway sells the rest in the moments before the test sees the store back, and
    no answer comes after."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        base: str,
        coupon: str,
        *,
        before_restart: int | None = None,
    ) -> None:
        self._http, self._base, self._coupon = http, base, coupon
        self._slots = asyncio.Semaphore(IN_FLIGHT)
        self._before_restart = before_restart
        self._sent_before_restart = 0
        self.restarted = asyncio.Event()
        self.answers: list[Answer] = []

    async def run(self) -> None:
        users = [f"user_{n}" for n in range(USERS)] * 2
        random.Random(29).shuffle(users)
        await asyncio.gather(*(self._claim(user) for user in users))

    async def outage_felt(self) -> bool:
        """Half a burst's worth of clients have been told 503."""
        return sum(1 for answer in self.answers if answer.status == 503) >= IN_FLIGHT // 2

    async def _claim(self, user_id: str) -> None:
        if self._before_restart is not None:
            if self._sent_before_restart < self._before_restart:
                self._sent_before_restart += 1
            else:
                await self.restarted.wait()
        async with self._slots:
            answer = await self.post(user_id)
        self.answers.append(answer)
        # After the restart a client told 503 comes back once, after its Retry-After, as
        # clients do: a gateway refuses claims for a moment after its store returns (its
        # probe's next round), and a burst sent at once can fall wholly in that moment.
        if answer.after_restart and answer.status == 503 and answer.error == "unavailable":
            await asyncio.sleep(RETRY_AFTER_SECONDS)
            async with self._slots:
                self.answers.append(await self.post(user_id))

    async def post(self, user_id: str) -> Answer:
        """One claim, answered within the hang guard."""
        body: dict[str, Any]
        async with (
            asyncio.timeout(HANG_GUARD_SECONDS),
            self._http.post(
                f"{self._base}/api/coupons/claim",
                json={"user_id": user_id, "coupon_name": self._coupon},
            ) as response,
        ):
            body = await response.json()
            status, saga_id = response.status, response.headers.get("X-Saga-Id", "")
        return Answer(user_id, status, body.get("error", ""), saga_id, self.restarted.is_set())


@asynccontextmanager
async def claims_database(url: str, settings: Settings) -> AsyncIterator[AsyncDatabase[Any]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url, tz_aware=True)
    try:
        yield client[settings.mongo_db]
    finally:
        await client.close()


async def ready(http: aiohttp.ClientSession, base: str) -> bool:
    async with http.get(f"{base}/ready") as response:
        return response.status == 200


async def sale_through_an_outage(http, base, pg, apart, ferretdb, coupon: str) -> Burst:
    """The whole burst; FerretDB is killed once a third of the stock is held, and started
    again once clients feel it. Returns when the burst is answered and every saga settled."""
    burst = Burst(http, base, coupon, before_restart=USERS)
    answering = asyncio.ensure_future(burst.run())
    await eventually(lambda: held_at_least(pg, coupon, STOCK // 3))

    await ferretdb.kill()
    await eventually(burst.outage_felt)
    await ferretdb.start()
    await eventually(lambda: ready(http, base))  # the gateway takes claims again
    burst.restarted.set()
    restarted = time.monotonic()
    caught_in_outage = await sagas_in_flight(apart.saga_log)

    async def outage_sagas_ended() -> bool:
        return not caught_in_outage & await sagas_in_flight(apart.saga_log)

    await eventually(outage_sagas_ended)
    print(
        f"{len(caught_in_outage)} sagas in flight at the restart, all ended "
        f"{time.monotonic() - restarted:.1f}s after it"
    )
    await answering
    await eventually(lambda: all_ended(pg, apart.saga_log, coupon))
    return burst


def assert_answers_tell_the_truth(answers: list[Answer], facts: CouponFacts, sagas) -> None:
    assert {answer.status for answer in answers} <= {200, 409, 503}
    # Every 200 is a real claim, made by the very saga the client was told about.
    for answer in answers:
        if answer.status == 200:
            assert facts.claims.get(answer.saga_id) == answer.user_id, answer
    # A claim whose client never saw a 200 was driven forward by a recoverer.
    told_200 = {answer.user_id for answer in answers if answer.status == 200}
    for saga_id, user_id in facts.claims.items():
        if user_id not in told_200:
            assert sagas[saga_id].recoveries >= 1, sagas[saga_id]


async def test_ferretdb_killed_mid_burst_and_started_again(http, settings, pg, tmp_path, name):
    """600 claims by 300 users for 100 units through a MongoDB crash and restart: every
    claim answered, every 200 true, no unit lost, and a 503 retried gets a definite answer."""
    async with (
        saga_log_apart(settings) as apart,
        ferretdb_apart(settings.database_url, tmp_path) as ferretdb,
    ):
        gateway_settings = changed(apart.settings, {**OUTAGE, "mongo_url": ferretdb.url})
        with gateway_process(gateway_settings, tmp_path / "gateway.log") as base:
            await create(http, base, name, STOCK)
            burst = await sale_through_an_outage(http, base, pg, apart, ferretdb, name)

            async with claims_database(ferretdb.url, gateway_settings) as claims:
                facts = await assert_invariants(pg, claims, name)
                sagas = {saga.saga_id: saga for saga in await apart.saga_log.find(None, 10_000)}
                print(
                    f"answers {dict(Counter(a.error or 'claimed' for a in burst.answers))}; "
                    f"{len(facts.claims)} claims, {facts.remaining_amount} units left"
                )
                assert_answers_tell_the_truth(burst.answers, facts, sagas)
                assert any(a.status == 200 and a.after_restart for a in burst.answers)
                assert all(saga.status.finished for saga in sagas.values())

                # 503 means "try again": with the store back, a retry gets a definite answer.
                told_503 = {answer.user_id for answer in burst.answers if answer.status == 503}
                retried = [await burst.post(user) for user in sorted(told_503)]
                assert {answer.status for answer in retried} <= {200, 409}
                await eventually(lambda: all_ended(pg, apart.saga_log, name))
                await assert_invariants(pg, claims, name)

        code, out, _ = await coupon_saga(gateway_settings, "audit", "--coupon", name)
        assert code == 0, out
