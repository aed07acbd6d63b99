"""Claims admitted to their saga a few at a time per process, in arrival order.

Past the pool sizes, more sagas at once only queue inside the drivers, where the order
is nobody's: in a flash sale the winners' slowest waited twice as long as with a short
queue in front (docs/PERFORMANCE.md). A claim that waits here has started nothing; one
that waits past its timeout (a hung store holding every slot) is refused with a 503.
"""

from __future__ import annotations

import asyncio

from orchestrator.http.errors import AtCapacity
from orchestrator.metrics import ADMISSION_REFUSED, ADMISSION_WAITING


class Admission:
    def __init__(self, slots: int, wait_seconds: float) -> None:
        self._slots = asyncio.Semaphore(slots)  # wakes its waiters first come, first served
        self._wait = wait_seconds

    async def enter(self) -> None:
        if not self._slots.locked():
            await self._slots.acquire()  # a free slot: taken at once, nobody waited
            return
        ADMISSION_WAITING.inc()
        try:
            async with asyncio.timeout(self._wait):
                await self._slots.acquire()
        except TimeoutError:
            ADMISSION_REFUSED.inc()
            raise AtCapacity from None
        finally:
            ADMISSION_WAITING.dec()

    def leave(self, _: object = None) -> None:
        """Usable as a done callback, so a slot is held until its saga ends, also when
        the client that asked for it has hung up."""
        self._slots.release()
