"""Claims recorded as a Jepsen history: each operation's invocation, its completion and
what kind of completion it was.

- `ok`: a definite answer, 200 (claimed) or 409 (refused by the business rules);
- `fail`: definitely took nothing: a plain 503 from a gateway, or HAProxy's own 503
  when no gateway was in rotation (the request reached none);
- `info`: the outcome is unknown: the connection broke or timed out, HAProxy gave up
  on the gateway (502/504), or the gateway answered 503 `in_doubt`.

Times are `time.monotonic()`; faults record theirs the same way (`Window`), so a
checker can tell what happened during each fault.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Literal

import aiohttp

from tests.support.sale import CUT, HANG_GUARD_SECONDS, IN_DOUBT, Answer

Kind = Literal["ok", "fail", "info"]
# HAProxy's 502 and 504: the gateway's answer never came (the request may have landed).
NO_ANSWER = (CUT, 502, 504)


@dataclass(frozen=True)
class Op:
    user_id: str
    kind: Kind
    invoked_at: float
    completed_at: float
    status: int = CUT  # CUT: no answer came
    error: str = ""  # the body's error code ("" for a 200, or no JSON body)
    saga_id: str = ""  # X-Saga-Id, if a gateway started a saga
    outcome: str | None = None  # the body's "outcome" (IN_DOUBT)

    def as_answer(self) -> Answer:
        """The answer as tests/support/sale.py's judge reads it: no answer, or the load
        balancer's giving up, is a claim cut off; any other status stands as it came."""
        if self.status in NO_ANSWER:
            return Answer(self.user_id, CUT, "", self.saga_id, "", None, False, self.completed_at)
        return Answer(
            self.user_id,
            self.status,
            self.error,
            self.saga_id,
            "",
            self.outcome,
            False,
            self.completed_at,
        )


def kind_of(status: int, error: str, outcome: str | None, json_body: bool) -> Kind:
    if status in (200, 409):
        return "ok"
    if status == 503 and outcome != IN_DOUBT and (error == "unavailable" or not json_body):
        return "fail"
    return "info"


@dataclass(frozen=True)
class Window:
    """A fault, from when the nemesis began it to when it was healed."""

    name: str
    began: float
    healed: float

    def overlaps(self, op: Op) -> bool:
        """Whether `op` was in flight at some moment of the fault."""
        return op.invoked_at <= self.healed and self.began <= op.completed_at


@dataclass
class History:
    ops: list[Op] = field(default_factory=list)
    windows: list[Window] = field(default_factory=list)

    async def claim(self, http: aiohttp.ClientSession, url: str, coupon: str, user: str) -> Op:
        """One claim through `url`, recorded whatever becomes of it."""
        invoked = time.monotonic()
        body = {"user_id": user, "coupon_name": coupon}
        try:
            async with (
                asyncio.timeout(HANG_GUARD_SECONDS),
                http.post(f"{url}/api/coupons/claim", json=body) as response,
            ):
                op = await _completed(user, invoked, response)
        except (aiohttp.ClientError, TimeoutError):
            op = Op(user, "info", invoked, time.monotonic())
        self.ops.append(op)
        return op


async def _completed(user: str, invoked: float, response: aiohttp.ClientResponse) -> Op:
    raw = await response.read()
    try:
        body = json.loads(raw)
        error, outcome, json_body = str(body.get("error", "")), body.get("outcome"), True
    except (ValueError, AttributeError):  # HAProxy's own pages are HTML
        error, outcome, json_body = "", None, False
    status = response.status
    kind = kind_of(status, error, outcome, json_body)
    saga_id = response.headers.get("X-Saga-Id", "")
    return Op(user, kind, invoked, time.monotonic(), status, error, saga_id, outcome)


async def run_sale(
    http: aiohttp.ClientSession,
    url: str,
    coupon: str,
    users: list[str],
    history: History,
    *,
    concurrency: int,
    per_second: float,
    held_back: int = 0,
    healed: asyncio.Event | None = None,
) -> None:
    """Claim for each of `users` in order, at most `per_second` sent a second and
    `concurrency` in flight, every one recorded in `history`. The last `held_back` wait
    for `healed`, then go at the same pace: the sale goes on after its fault, however
    long the fault lasted."""
    slots = asyncio.Semaphore(concurrency)
    first = len(users) - held_back

    async def paced(users: list[str]) -> None:
        started = time.monotonic()

        async def one(number: int, user: str) -> None:
            await asyncio.sleep(started + number / per_second - time.monotonic())  # the pace
            async with slots:
                await history.claim(http, url, coupon, user)

        await asyncio.gather(*(one(n, user) for n, user in enumerate(users)))

    async def after_heal() -> None:
        if held_back:
            assert healed is not None, "held-back claims wait for `healed`"
            await healed.wait()
            await paced(users[first:])

    await asyncio.gather(paced(users[:first]), after_heal())
