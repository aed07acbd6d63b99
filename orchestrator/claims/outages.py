"""Claims refused at the door while a store is known to be away.

A claim's saga that failed for a store away (after its retries) is the sign. Every claim
let in after it would take a unit it cannot record, answer 503 and leave an undo behind:
during one long outage that held thousands of units and grew memory without bound. So
from that moment this process refuses new claims with a 503 that took nothing, and
probes the stores, at once and then backing off up to every `probe_seconds`; once all
three answer, claims are let in again. (The first probes after a restart meet the pool's
dead connections, each of which fails once: probed quickly, they are soon replaced.)
Claims answered from memory (a repeat, a sold-out coupon) are not affected: they need no
store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

from orchestrator.metrics import CLAIMS_REFUSED_STORE_AWAY
from orchestrator.saga.backoff import Backoff
from sagas.errors import StoreUnavailable

log = logging.getLogger(__name__)

# The stores that did not answer a probe (none: all did).
Probe = Callable[[], Awaitable[Sequence[str]]]


class StoresAway:
    def __init__(self, probe: Probe, probe_seconds: float) -> None:
        self._probe = probe
        self._probe_seconds = probe_seconds
        self._away: str | None = None  # what the failing saga said was away
        self._probing: asyncio.Task[None] | None = None

    def refuse_if_away(self) -> None:
        """Raise what a claim gets while a store is known to be away: nothing was taken."""
        if self._away is not None:
            CLAIMS_REFUSED_STORE_AWAY.inc()
            raise StoreUnavailable(self._away, maybe_applied=False)

    def saw(self, error: BaseException) -> None:
        """A claim ended on `error`: if a store away caused it, refuse claims until the
        stores answer again."""
        cause = error if isinstance(error, StoreUnavailable) else error.__cause__
        if not isinstance(cause, StoreUnavailable) or self._away is not None:
            return
        self._away = cause.store
        log.warning("claims refused until every store answers: %s", cause)
        self._probing = asyncio.ensure_future(self._until_back())

    async def close(self) -> None:
        if self._probing is not None:
            self._probing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probing

    async def _until_back(self) -> None:
        backoff = Backoff(base_seconds=0.05, cap_seconds=self._probe_seconds)
        tries = 0
        while await self._probe():
            tries += 1
            await asyncio.sleep(backoff.delay(tries))
        self._away = None
        log.warning("claims let in again: every store answers")
