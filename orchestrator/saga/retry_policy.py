"""How long the service waits on a store, and how long it keeps trying: one object.

Built from the settings, whose model checks the rules between these numbers and the
lease (orchestrator/settings.py, _TIMING_RULES).
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.saga.backoff import Backoff
from orchestrator.settings import Settings

STORE_BACKOFF = Backoff(base_seconds=0.05, cap_seconds=1.0)


@dataclass(frozen=True)
class RetryPolicy:
    # How long a saga step (or its undo) is retried while its store is away (0: one try),
    # pausing by `backoff` between tries.
    retry_seconds: float = 10.0
    backoff: Backoff = STORE_BACKOFF
    # One try of a step longer than this is abandoned, as a store that did not answer.
    step_timeout_seconds: float = 10.0
    # What each driver allows one store call; shorter than a step's try, so drivers end
    # their own calls.
    store_timeout_seconds: float = 5.0

    def deferral_seconds(self, deferrals: int, lease_seconds: float) -> float:
        """How long a saga left to recovery (its store stayed away through the retries)
        waits before a recoverer takes it up: a retry window, doubled at each deferral,
        never longer than a lease (what the saga of a crashed driver waits)."""
        window = max(self.retry_seconds, self.backoff.cap_seconds)
        doubled = window * 2.0 ** min(max(deferrals - 1, 0), 16)
        return min(lease_seconds, doubled)

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(
            retry_seconds=settings.saga_retry_seconds,
            step_timeout_seconds=settings.step_timeout_seconds,
            store_timeout_seconds=settings.store_timeout_seconds,
        )


DEFAULT_POLICY = RetryPolicy()  # the settings' defaults
