"""A sale whose every answer is kept, and the check of each answer against the stores.

What each answer promises (docs/API.md): a 200 is a claim that stands, made by the saga
its X-Saga-Id names; a 503 without `"outcome": "in_doubt"` took nothing (that saga left
no claim document and no live hold); a 503 in doubt may have gone either way.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.invariants import CouponFacts
from tests.support.processes import descendants

HANG_GUARD_SECONDS = 60.0  # one claim: far above what retries and undos cost


@dataclass(frozen=True)
class Told:
    """One claim's answer."""

    user_id: str
    status: int
    error: str
    outcome: str | None
    saga_id: str
    after_heal: bool = False  # sent once the sale's fault was healed

    @property
    def kind(self) -> str:
        if self.status == 200:
            return "200"
        return " ".join(filter(None, (str(self.status), self.error, self.outcome)))


class Sale:
    """`users` distinct users claim `coupon` once each, `concurrency` at a time, spread
    over the gateways at `bases`.

    `held_back`: the claims past that many wait for `healed` to be set, so a sale goes on
    after its fault is healed, however fast the claims during the fault are refused."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        bases: list[str],
        coupon: str,
        *,
        users: int,
        concurrency: int,
        held_back: int | None = None,
    ) -> None:
        self._http = http
        self._bases = itertools.cycle(bases)
        self._coupon = coupon
        self._users = [f"user_{n}" for n in range(users)]
        self._slots = asyncio.Semaphore(concurrency)
        self._held_back = users if held_back is None else held_back
        self.healed = asyncio.Event()
        self.told: list[Told] = []

    async def run(self) -> None:
        await asyncio.gather(*(self._claim(n, user) for n, user in enumerate(self._users)))

    async def answered(self, count: int) -> bool:
        return len(self.told) >= count

    async def told_503(self, count: int, since: int = 0) -> bool:
        """At least `count` answers 503 among those from answer `since` on."""
        return sum(1 for told in self.told[since:] if told.status == 503) >= count

    async def _claim(self, number: int, user_id: str) -> None:
        if number >= self._held_back:
            await self.healed.wait()
        async with self._slots:
            healed = self.healed.is_set()
            told = await claim_told(self._http, next(self._bases), user_id, self._coupon)
            self.told.append(replace(told, after_heal=healed))


async def claim_told(http: aiohttp.ClientSession, base: str, user_id: str, coupon: str) -> Told:
    body: dict[str, Any]
    async with (
        asyncio.timeout(HANG_GUARD_SECONDS),
        http.post(
            f"{base}/api/coupons/claim", json={"user_id": user_id, "coupon_name": coupon}
        ) as response,
    ):
        body = await response.json()
        return Told(
            user_id,
            response.status,
            body.get("error", ""),
            body.get("outcome"),
            response.headers.get("X-Saga-Id", ""),
        )


def false_answers(told: list[Told], facts: CouponFacts) -> list[str]:
    """Each answer that promised what the stores do not show, once every saga ended."""
    found = []
    for answer in told:
        if answer.status == 200 and facts.claims.get(answer.saga_id) != answer.user_id:
            found.append(f"200 for a claim that does not stand: {answer}")
        if answer.status == 503 and answer.outcome is None:
            hold = facts.holds.get(answer.saga_id, ("", "released"))
            if answer.saga_id in facts.claims or hold[1] != "released":
                found.append(f"503 'nothing taken' for a claim that took: {answer}")
    return found


def tally(told: list[Told]) -> dict[str, int]:
    return dict(Counter(answer.kind for answer in told).most_common())


def resident_bytes(pid: int) -> int:
    """The resident memory of a gateway's worker processes, together."""
    total = 0
    for worker in descendants(pid):
        try:
            status = Path(f"/proc/{worker}/status").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
    return total
