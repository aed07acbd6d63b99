"""Every Redis key the service writes, in one place. All start with one prefix (the
REDIS_KEY_PREFIX setting, so several services or tests can share a Redis), and the
variable part is always a saga id we generated (a UUID), never client input."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PREFIX = "coupon:"


@dataclass(frozen=True)
class RedisKeys:
    prefix: str = DEFAULT_PREFIX

    @property
    def in_flight(self) -> str:
        """Sorted set: saga id → its lease's expiry (epoch seconds on Redis's clock), not its
        last update: each write and each takeover renews the lease, so the highest scores are
        the sagas written last."""
        return f"{self.prefix}sagas:in-flight"

    @property
    def failed(self) -> str:
        """Sorted set: sagas parked for an operator, scored by last update."""
        return f"{self.prefix}sagas:failed"

    @property
    def finished(self) -> str:
        """Sorted set: completed or compensated sagas, scored by last update, trimmed by age."""
        return f"{self.prefix}sagas:finished"

    @property
    def refused(self) -> str:
        """Sorted set: sagas refused before any side effect, scored by last update, trimmed
        sooner."""
        return f"{self.prefix}sagas:refused"

    def saga(self, saga_id: str) -> str:
        return f"{self.prefix}saga:{saga_id}"

    def saga_events(self, saga_id: str) -> str:
        return f"{self.prefix}saga:{saga_id}:events"
