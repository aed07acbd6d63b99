"""Runs the stock's reconciliation after a failover (sagas/lineage.py): once at start, at
once whenever a reserve or a confirm finds PostgreSQL on a history not reconciled yet,
and every recovery interval besides (a failover may come with no claim to notice it).
One run at a time per process; a store that fails it is tried again at the next word.
A store away is not logged here: the outage is reported where claims meet it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from sagas.errors import StoreNotSetUp, StoreUnavailable, describe
from sagas.lineage import Reconciled

log = logging.getLogger(__name__)

Reconcile = Callable[[], Awaitable[Reconciled | None]]


class Reconciler:
    def __init__(self) -> None:
        self._reconcile: Reconcile | None = None
        self._running: asyncio.Task[None] | None = None
        self._not_set_up: str | None = None

    def bind(self, reconcile: Reconcile) -> None:
        """Late: the inventory that asks for it is built before what it reads."""
        self._reconcile = reconcile

    def poke(self) -> None:
        """A reserve was refused for an unreconciled history: reconcile, if not under way."""
        if self._running is None or self._running.done():
            self._running = asyncio.ensure_future(self._run_in_background())

    async def run_now(self) -> None:
        """At start. A store not set up for it (a role without rights on
        `inventory_lineage`) stops the start with its advice, as any other would."""
        if self._reconcile is None:
            return
        started = time.monotonic()
        try:
            outcome = await self._reconcile()
        except StoreUnavailable as error:
            log.debug("stock reconciliation waits for the stores: %s", describe(error))
            return
        if outcome is not None:
            _say(outcome, time.monotonic() - started)

    async def watch(self, interval_seconds: float) -> None:
        """Look every `interval_seconds` (until cancelled)."""
        while True:
            await asyncio.sleep(interval_seconds)
            await self._run_in_background()

    async def _run_in_background(self) -> None:
        """Running: a store that stops being set up for it is said once, not each time."""
        try:
            await self.run_now()
        except StoreNotSetUp as error:
            if str(error) != self._not_set_up:
                log.error("stock reconciliation cannot run: %s", error)
            self._not_set_up = str(error)
        except Exception as error:
            # A PostgreSQL that refuses us otherwise (a database closed to connections)
            # is neither an outage nor a missing right to the adapters; the watch must
            # outlive it, as the recovery rounds do, or reconciliation stops for good
            # and the gateway's stop raises it.
            log.warning("stock reconciliation failed: %s", describe(error))
        else:
            self._not_set_up = None

    async def close(self) -> None:
        if self._running is not None:
            self._running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._running


def _say(outcome: Reconciled, seconds: float) -> None:
    if outcome.was is None:
        log.info("stock reconciled on timeline %d in %.2fs", outcome.now.timeline, seconds)
    else:
        log.warning(
            "PostgreSQL is on timeline %d (was %d%s): stock reconciled in %.2fs; %d claims' holds "
            "and %d in-flight sagas' holds the failover lost were restored",
            outcome.now.timeline,
            outcome.was.timeline,
            ""
            if outcome.was.system_identifier == outcome.now.system_identifier
            else ", another cluster",
            seconds,
            outcome.claims_restored,
            outcome.in_flight_restored,
        )
    for problem in outcome.not_restored:
        log.error("after the failover, %s: an operator must look (coupon-saga audit)", problem)
