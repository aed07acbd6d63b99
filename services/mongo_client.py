"""The MongoDB client the service uses now, and the one way every call reaches it.

Calls run to their own end. PyMongo (4.x, on Python before 3.12) waits for a server or a
pooled connection in `asyncio.wait_for` over a condition of its topology or pool. A
cancellation that lands while that `wait_for` is cancelling its own timed-out wait makes
it release a lock the task no longer holds; the abandoned wait then takes the lock back
and nobody ever releases it, so every later call of that client queues on the lock for
good (issue 21; Python 3.12 rewrote `wait_for`). So nothing of ours cancels PyMongo: a
caller that stops waiting — a saga step's timeout, the readiness probe, a shutdown —
leaves the call to end by PyMongo's own deadline (`timeoutMS`).

The client can be replaced while the service runs (orchestrator/mongo_renewal.py): every
adapter reads the current one here, so one swap reaches them all.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

log = logging.getLogger(__name__)

Result = TypeVar("Result")
Client = AsyncMongoClient[dict[str, Any]]


class CurrentMongoClient:
    def __init__(self, client: Client, database_name: str) -> None:
        self._database_name = database_name
        self._client = client
        self._database: AsyncDatabase[dict[str, Any]] = client[database_name]
        self._calls: set[asyncio.Task[Any]] = set()  # running on, their callers gone

    @property
    def client(self) -> Client:
        return self._client

    @property
    def database(self) -> AsyncDatabase[dict[str, Any]]:
        """The service's database on the current client (one object per client)."""
        return self._database

    async def run(self, call: Callable[[], Awaitable[Result]]) -> Result:
        """`call()`'s result. Cancelling the caller stops its wait, never the call."""
        task = asyncio.ensure_future(call())
        self._calls.add(task)  # a task only the shield knows of could be collected
        task.add_done_callback(self._forget)
        return await asyncio.shield(task)

    def _forget(self, task: asyncio.Task[Any]) -> None:
        self._calls.discard(task)
        if not task.cancelled():
            task.exception()  # its caller may be gone: the outcome is nobody's to report

    async def ping(self) -> None:
        await self.run(lambda: self._database.command("ping"))

    def replace(self, client: Client) -> Client:
        """Make `client` the current one; returns the one it replaces, for its owner to
        close. Calls under way on the old one run on there."""
        old = self._client
        self._client, self._database = client, client[self._database_name]
        return old

    async def close(self, seconds: float) -> None:
        await close_within(self._client, seconds)


async def close_within(client: Client, seconds: float) -> bool:
    """Close `client`, waiting for it at most `seconds`; False if it did not finish.

    A wedged client's close queues for the lock nobody releases. Cut short there it only
    stops queueing; the connections it could not close stay open until the process ends.
    """
    try:
        async with asyncio.timeout(seconds):
            await client.close()
    except Exception as error:  # whatever the driver raises, the client is given up
        log.warning("a mongodb client did not close within %gs: %r", seconds, error)
        return False
    return True
