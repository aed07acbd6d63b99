"""Durable saga-log writes: each round trip of fenced writes ends with WAIT.

Redis replicates asynchronously: a write the master acknowledged is lost in a failover
if no replica had it yet. With REDIS_WAIT_REPLICAS above 0 the pipeline that carries the
writes (one, or a batch) ends with `WAIT <replicas> <timeout ms>`, in the same round
trip, which answers once that many replicas have every write sent before it on the
connection, or when the timeout runs out, with how many had.

Fewer replicas than asked does not fail the write: it is done on the master, and the
claim's facts (its hold in PostgreSQL, its claim document in MongoDB) do not rest on it.
A log write lost in a failover is what recovery and the hold settlement already settle
from those facts; failing the write instead would have its saga write again what the
master has already taken (a second create is refused as a duplicate). The shortfall is
told to an observer (counted, and logged when it starts and when it ends).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol


class ReplicationObserver(Protocol):
    def short(self, writes: int, acknowledged: int, wanted: int) -> None:
        """`writes` done on the master that only `acknowledged` replicas had in time."""

    def met(self) -> None:
        """A round trip's writes reached as many replicas as asked."""


@dataclass(frozen=True)
class ReplicaWait:
    replicas: int = 0  # 0: no WAIT
    timeout_ms: int = 100
    observer: ReplicationObserver | None = None

    def after_writes(self, pipe: Any) -> None:
        """Queue the WAIT after the pipeline's writes (nothing when off)."""
        if self.replicas:
            pipe.wait(self.replicas, self.timeout_ms)

    def settle(self, answers: Sequence[object]) -> list[object]:
        """The writes' answers, the WAIT's taken off and judged. A write is done when its
        script answered something true (a fenced refusal answers 0, an error is none)."""
        if not self.replicas:
            return list(answers)
        *writes, acknowledged = answers
        done = sum(1 for answer in writes if answer and not isinstance(answer, Exception))
        if done and self.observer is not None:
            reached = acknowledged if isinstance(acknowledged, int) else 0
            if reached >= self.replicas:
                self.observer.met()
            else:
                self.observer.short(done, reached, self.replicas)
        return writes
