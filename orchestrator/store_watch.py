"""Each store as this process last saw it: a metric, and a log line only when it changes.

During an outage every part of the gateway meets the missing store again and again (the
recovery loop, the readiness probe, asyncpg refilling its pool). Saying so each time
buried the logs under the same line; here an outage is one line when it starts and one
when it ends, and the repeats are at debug.
"""

from __future__ import annotations

import logging

from orchestrator.metrics import STORE_UP, STORES

log = logging.getLogger(__name__)


class StoreStates:
    def __init__(self) -> None:
        self._down: dict[str, bool] = {}
        for store in STORES:
            STORE_UP.labels(store).set(1)  # the gateway starts only once every store answered

    @staticmethod
    def watches(store: str) -> bool:
        """Whether `store` names a store (a StoreUnavailable may name a saga step instead)."""
        return store in STORES

    def unavailable(self, store: str, reason: str) -> None:
        STORE_UP.labels(store).set(0)
        if self._down.get(store):
            log.debug("%s is still unavailable: %s", store, reason)
            return
        self._down[store] = True
        log.warning("%s is unavailable: %s", store, reason)

    def available(self, store: str) -> None:
        STORE_UP.labels(store).set(1)
        if self._down.get(store):
            log.warning("%s is available again", store)
        self._down[store] = False
