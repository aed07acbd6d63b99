"""A MongoDB client left as issue 21 found one, for the tests of what must still work then.

Found in a wedged worker: the client's topology lock held by no task that will ever release
it (every call, and the monitor, queue on it for good), and PyMongo's Condition.wait tasks,
abandoned by a cancelled `wait_for`, retrying to take that lock back and swallowing every
cancellation meanwhile (so a loop that cancels every task and waits for them never ends).
Made here on purpose, with PyMongo's own lock and condition.
"""

from __future__ import annotations

import asyncio
from typing import Any


class Wedge:
    def __init__(self, lock: Any, abandoned: asyncio.Task[None]) -> None:
        self._lock = lock
        self.abandoned = abandoned

    @classmethod
    async def of(cls, client: Any) -> Wedge:
        topology = client._topology
        lock, condition = topology._lock, topology._condition

        waiting = asyncio.Event()

        async def waiting_for_a_server() -> None:
            await lock.acquire()
            waiting.set()
            await condition.wait()  # gives the lock up; takes it back, whatever it takes

        abandoned = asyncio.create_task(waiting_for_a_server())
        await waiting.wait()  # it waits now, its lock given up
        await lock.acquire()  # and never released
        abandoned.cancel()  # it now retries the lock, swallowing each cancellation
        await asyncio.sleep(0)
        return cls(lock, abandoned)

    async def undo(self) -> None:
        """Let the abandoned wait take the lock and end (so this loop can close), then
        release what it took (so the client can)."""
        self._lock.release()
        await asyncio.gather(self.abandoned, return_exceptions=True)
        self._lock.release()
