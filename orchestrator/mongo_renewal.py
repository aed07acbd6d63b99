"""A MongoDB client that stays broken while its server answers a new one is replaced.

The one cause we found is gone (services/mongo_client.py: nothing cancels PyMongo), but a
client that cannot heal itself fails every claim of its worker until a restart, so this is
the net under it. The store watch tells it what each probe of the current client found.
Once that client has failed for STUCK_AFTER_SECONDS, each failed probe asks a new client of
one connection; if the server answers that one while the current client still does not, a
new client takes the current one's place (both adapters read it through
CurrentMongoClient) and the old one is closed in the background, within the store timeout.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from services.mongo_client import Client, CurrentMongoClient, close_within

log = logging.getLogger(__name__)

# Two probe intervals: a client that can heal does so at its first look at a server that
# is back (PyMongo checks it again at once while a call waits for it).
STUCK_AFTER_SECONDS = 10.0
# The current client's last chance, once a new client got an answer.
LAST_CHANCE_SECONDS = 2.0


class MongoRenewal:
    def __init__(
        self,
        current: CurrentMongoClient,
        *,
        new_client: Callable[[], Client],
        lone_client: Callable[[], Client],
        close_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`new_client`: the service's client, to take over; `lone_client`: one of a
        single connection, to ask the server whether it answers a new client."""
        self._current = current
        self._new_client = new_client
        self._lone_client = lone_client
        self._close_seconds = close_seconds
        self._clock = clock
        self._failing_since: float | None = None
        self._closing: set[asyncio.Task[bool]] = set()

    async def probed(self, answered: bool) -> None:
        """Told what the latest probe of the current client found."""
        now = self._clock()
        if answered:
            self._failing_since = None
            return
        if self._failing_since is None:
            self._failing_since = now
        if now - self._failing_since < STUCK_AFTER_SECONDS:
            return
        if await self._a_new_client_answers() and not await self._current_answers():
            self._replace(now - self._failing_since)

    async def close(self) -> None:
        """Wait for the old clients' closes (each bounded by the store timeout)."""
        await asyncio.gather(*self._closing, return_exceptions=True)

    async def _a_new_client_answers(self) -> bool:
        asking = CurrentMongoClient(self._lone_client(), self._current.database.name)
        try:
            await asking.ping()  # ended by its own timeoutMS
        except Exception:
            return False
        finally:
            await asking.close(self._close_seconds)
        return True

    async def _current_answers(self) -> bool:
        try:
            async with asyncio.timeout(LAST_CHANCE_SECONDS):
                await self._current.ping()
        except Exception:
            return False
        return True

    def _replace(self, failing_seconds: float) -> None:
        old = self._current.replace(self._new_client())
        self._failing_since = None
        log.warning(
            "mongodb: replaced this process's client, which had failed for %.0fs while a new "
            "client's ping answered; the old one is closed in the background",
            failing_seconds,
        )
        closing = asyncio.ensure_future(close_within(old, self._close_seconds))
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)
