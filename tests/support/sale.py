"""A flash sale as its clients make it, and what their answers are worth.

Claims go a few dozen at a time, each to the gateway `route` names when it is sent, and
every answer is kept. Once the sale has settled, `judge` reads the answers against the
stores, by what each promises (docs/API.md): a 200 is a claim that stands, made by the
saga its X-Saga-Id names; a refusal (409, or 503 without `"outcome": "in_doubt"`) took
nothing; a 503 in doubt may have gone either way.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

import aiohttp

from tests.support.invariants import CouponFacts

# One claim: far above the retries, undo and admission queue a fault can cost it. A claim
# that outlasts it is a hang, and fails the test.
HANG_GUARD_SECONDS = 60.0
CUT = 0  # the status of a claim whose connection broke before its answer came
IN_DOUBT = "in_doubt"


@dataclass(frozen=True)
class Answer:
    user_id: str
    status: int  # CUT: the gateway died under it, the outcome is unknown to the client
    error: str  # the body's error code; "" for a 200
    saga_id: str  # X-Saga-Id; "" if no saga was started (admission refused it) or CUT
    gateway: str  # the base URL it was sent to
    outcome: str | None = None  # the body's "outcome": IN_DOUBT, or None
    after_heal: bool = False  # sent once the sale's fault was healed
    answered_at: float = 0.0  # time.monotonic() when the answer came

    @property
    def in_doubt(self) -> bool:
        return self.outcome == IN_DOUBT


def claimants(users: int, repeats: int = 0, seed: int = 0) -> list[str]:
    """`users` distinct users, `repeats` of whom claim twice, in a shuffled order."""
    names = [f"user_{n}" for n in range(users)]
    rng = random.Random(seed)
    order = names + rng.sample(names, repeats)
    rng.shuffle(order)
    return order


class Sale:
    """Claims of one coupon by `users`, `concurrency` in flight at once.

    `held_back`: the claims past that many wait for `healed` to be set, so a sale goes on
    after its fault is healed, however fast the claims during the fault are refused.
    `per_second`: the claims are sent at that rate at most (a sale that lasts through a
    failover, to tell how long claims were refused), not only as fast as answered."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        coupon: str,
        users: list[str],
        concurrency: int,
        route: Callable[[], str],
        *,
        held_back: int | None = None,
        per_second: float | None = None,
    ) -> None:
        """`route` gives the base URL of the gateway for the next claim: a test switches it
        when a gateway dies, as a load balancer would."""
        self._http, self._coupon, self._users = http, coupon, users
        self._slots = asyncio.Semaphore(concurrency)
        self._route = route
        self._held_back = len(users) if held_back is None else held_back
        self._per_second = per_second
        self.healed = asyncio.Event()
        self.answers: list[Answer] = []

    async def run(self) -> list[Answer]:
        started = time.monotonic()

        async def one(number: int, user_id: str) -> None:
            if self._per_second is not None:  # the load's own pace, not a wait for an event
                await asyncio.sleep(started + number / self._per_second - time.monotonic())
            if number >= self._held_back:
                await self.healed.wait()
            async with self._slots:
                healed = self.healed.is_set()
                answer = await self._claim(user_id)
                self.answers.append(
                    replace(answer, after_heal=healed, answered_at=time.monotonic())
                )

        await asyncio.gather(*(one(number, user) for number, user in enumerate(self._users)))
        return self.answers

    def answered(
        self, count: int, status: int | None = None, *, since: int = 0
    ) -> Callable[[], Awaitable[bool]]:
        """A check for `eventually`: `count` answers have come (with `status`, if given),
        counting from answer number `since`."""

        async def check() -> bool:
            return sum(status in (None, a.status) for a in self.answers[since:]) >= count

        return check

    async def _claim(self, user_id: str) -> Answer:
        body = {"user_id": user_id, "coupon_name": self._coupon}
        async with asyncio.timeout(HANG_GUARD_SECONDS):
            while True:
                gateway = self._route()
                try:
                    async with self._http.post(f"{gateway}/api/coupons/claim", json=body) as got:
                        return await _answer(user_id, gateway, got)
                except aiohttp.ClientConnectorError:
                    continue  # nothing was sent (the port is closed): the next route
                except aiohttp.ClientError:
                    return Answer(user_id, CUT, "", "", gateway)


async def _answer(user_id: str, gateway: str, response: aiohttp.ClientResponse) -> Answer:
    text = await response.text()
    try:
        body = await response.json(content_type=None)
        error, outcome = str(body.get("error", "")), body.get("outcome")
    except ValueError:  # a body that is not JSON (a proxy's 502 page, say) is its own error
        error, outcome = text[:200], None
    saga_id = response.headers.get("X-Saga-Id", "")
    return Answer(user_id, response.status, error, saga_id, gateway, outcome)


def outcomes(answers: list[Answer]) -> Counter[str]:
    """Answers by status, error code and outcome, for the test's report."""
    named = {CUT: "cut off", 200: "claimed"}
    return Counter(
        " ".join(filter(None, (str(a.status), a.error or named.get(a.status), a.outcome)))
        for a in answers
    )


@dataclass(frozen=True)
class Verdict:
    statuses: Counter[int]
    # Told 409 or a plain 503 while the very saga it named made a claim that stands.
    false_answers: list[Answer]


def judge(answers: list[Answer], facts: CouponFacts, claimed_by: list[str]) -> Verdict:
    """Read the answers against the settled stores. Fails (AssertionError) on an answer no
    fault excuses: a 500 or another 5xx than 503, a 200 for a claim that does not stand, a
    refusal whose saga still holds a unit, a claim that no answer accounts for."""
    statuses = Counter(a.status for a in answers)
    assert set(statuses) <= {CUT, 200, 409, 503}, statuses
    for a in answers:
        if a.status == 200:
            assert facts.claims.get(a.saga_id) == a.user_id, ("no claim document", a)
            assert facts.holds.get(a.saga_id) == (a.user_id, "confirmed"), ("no unit", a)
            assert a.user_id in claimed_by, ("not in claimed_by", a)
    refused = [a for a in answers if a.status in (409, 503) and a.saga_id and not a.in_doubt]
    false_answers = [a for a in refused if a.saga_id in facts.claims]
    for a in refused:
        if a not in false_answers:
            _, status = facts.holds.get(a.saga_id, (a.user_id, "released"))
            assert status == "released", ("a refusal that took a unit", a, status)
    # A claim stands on a saga some answer named, or on a claim whose answer was cut off
    # (its saga taken over and driven forward): none from a refusal that named no saga.
    named = {a.saga_id for a in answers if a.saga_id}
    cut_off = {a.user_id for a in answers if a.status == CUT}
    for saga_id, user_id in facts.claims.items():
        assert saga_id in named or user_id in cut_off, ("a claim no answer accounts for", user_id)
    return Verdict(statuses, false_answers)


def refused_for(answers: list[Answer]) -> float:
    """How long claims were refused: from the first answer 503 to the last (0: none)."""
    refused = [answer.answered_at for answer in answers if answer.status == 503]
    return max(refused) - min(refused) if refused else 0.0


def claimed_again_after(answers: list[Answer], since: float) -> float | None:
    """Seconds from `since` (time.monotonic()) to the first 200 after the last 503 that
    followed it: how long until claims were taken again. None: no 503 after it."""
    refused = [a.answered_at for a in answers if a.status == 503 and a.answered_at >= since]
    if not refused:
        return None
    again = [a.answered_at for a in answers if a.status == 200 and a.answered_at > max(refused)]
    return (min(again) - since) if again else None
