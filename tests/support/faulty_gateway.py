"""`coupon-service` with a fault in it, for the fault tests: right after a named saga step's
action, the gateway kills itself (as `kill -9` would) or freezes, event loop and all (like
a long GC pause or SIGSTOP, so its lease runs out). The same gateway, workers and start-up
as `coupon-service` (orchestrator/main.py), with an `after_step` hook that production
code never has. Run from the source checkout:

    TEST_FAULT_KILL_AFTER=reserve python -m tests.support.faulty_gateway
    TEST_FAULT_STALL_AFTER=record TEST_FAULT_STALL_SECONDS=10 python -m tests.support.faulty_gateway
    TEST_FAULT_WEDGE_MONGO_AFTER=record python -m tests.support.faulty_gateway

The last leaves the process's MongoDB client as issue 21 found one (tests/support/wedge.py).
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # importing the engine imports prometheus_client: main() decides first
    from orchestrator.saga.engine import AfterStep

KILL_AFTER = "TEST_FAULT_KILL_AFTER"
STALL_AFTER = "TEST_FAULT_STALL_AFTER"
STALL_SECONDS = "TEST_FAULT_STALL_SECONDS"
WEDGE_MONGO_AFTER = "TEST_FAULT_WEDGE_MONGO_AFTER"


@dataclass(frozen=True)
class Fault:
    """What the gateway does to itself right after `step`'s action succeeds."""

    step: str
    stall_seconds: float | None = None  # None: it dies
    wedges_mongo: bool = False  # instead of either: its MongoDB client is wedged, once

    @classmethod
    def kill_after(cls, step: str) -> Fault:
        return cls(step)

    @classmethod
    def stall_after(cls, step: str, seconds: float) -> Fault:
        return cls(step, seconds)

    @classmethod
    def wedge_mongo_after(cls, step: str) -> Fault:
        return cls(step, wedges_mongo=True)

    def env(self) -> dict[str, str]:
        """The environment that asks the faulty gateway for this fault."""
        if self.wedges_mongo:
            return {WEDGE_MONGO_AFTER: self.step}
        if self.stall_seconds is None:
            return {KILL_AFTER: self.step}
        return {STALL_AFTER: self.step, STALL_SECONDS: str(self.stall_seconds)}

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Fault:
        if step := environ.get(KILL_AFTER):
            return cls.kill_after(step)
        if step := environ.get(STALL_AFTER):
            return cls.stall_after(step, float(environ[STALL_SECONDS]))
        if step := environ.get(WEDGE_MONGO_AFTER):
            return cls.wedge_mongo_after(step)
        raise SystemExit(
            f"faulty_gateway: set {KILL_AFTER}, or {STALL_AFTER} and {STALL_SECONDS}, "
            f"or {WEDGE_MONGO_AFTER}"
        )

    def hook(self) -> AfterStep:
        def after_step(done: str) -> None:
            if done != self.step:
                return
            if self.wedges_mongo:
                _wedge_mongo_clients_once()
            elif self.stall_seconds is None:
                os.kill(os.getpid(), signal.SIGKILL)
            else:
                time.sleep(self.stall_seconds)  # blocks the event loop on purpose

        return after_step


_WEDGING: list[asyncio.Task[object]] = []  # kept, once started: the fault happens once


def _wedge_mongo_clients_once() -> None:
    """The fault hook is handed nothing but the step's name: the process's MongoDB clients
    are found among its live objects."""
    if _WEDGING:
        return
    from services.mongo_client import CurrentMongoClient
    from tests.support.wedge import Wedge

    for found in gc.get_objects():
        if isinstance(found, CurrentMongoClient):
            _WEDGING.append(asyncio.get_running_loop().create_task(Wedge.of(found.client)))


if __name__ == "__main__":
    from orchestrator.main import main

    main(after_step=Fault.from_env(os.environ).hook())
