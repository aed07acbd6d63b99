"""Capped exponential backoff with full jitter, for retrying a store that is away."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    base_seconds: float = 0.05
    cap_seconds: float = 1.0

    def delay(self, retry: int) -> float:
        """The pause before retry number `retry` (1 for the first). Full jitter: a burst of
        failing sagas does not come back to the store in lockstep."""
        doublings = min(retry - 1, 32)  # far past any cap; an unbounded power would overflow
        return random.uniform(0, min(self.cap_seconds, self.base_seconds * 2**doublings))
