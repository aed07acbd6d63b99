"""Claims at a steady rate, each by a new user, whatever the answers: a sale's traffic.

Open loop, as real clients are: a slow gateway does not slow the stream down, so an
outage meets the full rate. The pause between sends sets the pace; no test waits on it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator

import aiohttp

HANG_GUARD_SECONDS = 60.0  # one claim: far above anything an outage costs it
MAX_IN_FLIGHT = 1000  # past it a send is skipped (counted): the test's client has its limits


class SteadyClaims:
    def __init__(self, http: aiohttp.ClientSession, base: str, coupon: str, rate: float) -> None:
        self._http, self._base, self._coupon = http, base, coupon
        self._interval = 1.0 / rate
        self._in_flight: set[asyncio.Task[None]] = set()
        self._sent = 0
        self.statuses: Counter[int] = Counter()
        self.skipped = 0

    async def _claim(self, user_id: str) -> None:
        try:
            async with (
                asyncio.timeout(HANG_GUARD_SECONDS),
                self._http.post(
                    f"{self._base}/api/coupons/claim",
                    json={"user_id": user_id, "coupon_name": self._coupon},
                ) as response,
            ):
                await response.read()
                self.statuses[response.status] += 1
        except (aiohttp.ClientError, TimeoutError):
            self.statuses[0] += 1  # no answer: counted apart, as a test's failure to see

    async def _send_forever(self) -> None:
        while True:
            if len(self._in_flight) < MAX_IN_FLIGHT:
                self._sent += 1
                task = asyncio.create_task(self._claim(f"steady_{self._sent}"))
                self._in_flight.add(task)
                task.add_done_callback(self._in_flight.discard)
            else:
                self.skipped += 1
            await asyncio.sleep(self._interval)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[SteadyClaims]:
        """Send while the block runs; after it, every claim sent has its answer."""
        sender = asyncio.create_task(self._send_forever())
        try:
            yield self
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
            await asyncio.gather(*self._in_flight, return_exceptions=True)
