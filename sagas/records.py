"""What the saga log keeps about a saga: its record and the events of its history."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any


class SagaStatus(enum.StrEnum):
    RUNNING = "running"
    COMPENSATING = "compensating"
    COMPLETED = "completed"
    COMPENSATED = "compensated"  # what it did was undone
    REFUSED = "refused"  # a business rule said no before it changed anything
    FAILED = "failed"  # parked for an operator

    @property
    def in_flight(self) -> bool:
        return self in (SagaStatus.RUNNING, SagaStatus.COMPENSATING)

    @property
    def finished(self) -> bool:
        return self in (SagaStatus.COMPLETED, SagaStatus.COMPENSATED, SagaStatus.REFUSED)


class Phase(enum.StrEnum):
    STARTED = "started"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    RETRYING = "retrying"
    RECOVERED = "recovered"
    COMPENSATING = "compensating"
    COMPENSATED = "compensated"
    COMPENSATION_FAILED = "compensation_failed"
    GAVE_UP = "gave_up"  # recovery stopped after too many takeovers: parked, nothing tried
    # Past its pivot, a step's store stayed away through the driver's tries: the saga stays
    # in flight and recovery takes it up again, soon (its lease is shortened to a backoff).
    DEFERRED = "deferred"
    FINISHED = "finished"


# Each try at a store call (an action or an undo) leaves exactly one of these: a retry,
# or the outcome of its last try. The engine resets a record's `attempts` at each step.
_TRY_ENDS = frozenset(
    {
        Phase.RETRYING,
        Phase.SUCCEEDED,
        Phase.FAILED,
        Phase.COMPENSATED,
        Phase.COMPENSATION_FAILED,
        Phase.DEFERRED,
    }
)


@dataclass(frozen=True)
class SagaEvent:
    at: float
    step: str
    phase: Phase
    error: str = ""
    # The tries this event stands for: a long run of retries writes an event for only
    # some of them (store_calls.py), each counting those since the last one written.
    tries: int = 1


@dataclass(frozen=True)
class SagaRecord:
    saga_id: str
    name: str
    payload: dict[str, Any]
    status: SagaStatus
    step: str
    created_at: float
    updated_at: float
    attempts: int = 0
    error: str = ""
    # The steps whose actions have completed, in order: what a compensation must undo.
    done: tuple[str, ...] = field(default=())
    # Once compensation has begun the saga only goes backward, also after being parked.
    compensating: bool = False
    # Fencing token: raised by every takeover; a save carrying an older one is refused.
    epoch: int = 1
    recoveries: int = 0  # takeovers, by any recoverer
    # Times a driver left the saga to recovery because a store stayed away: the takeovers
    # these explain are no sign of a saga that kills its drivers (recovery.py).
    deferrals: int = 0
    # The payload as the steps take it, decoded once per drive (`SagaDefinition.bind`);
    # never stored: the log keeps `payload`.
    arguments: Any = field(default=None, compare=False, repr=False)

    def moved(self, at: float, **changes: Any) -> SagaRecord:
        return replace(self, updated_at=at, **changes)

    @property
    def in_progress(self) -> str | None:
        """The step begun and not done (its effect unknown), if any."""
        return self.step if self.step not in self.done else None


@dataclass(frozen=True)
class Lease:
    """Who drives an in-flight saga, and until when (by the saga log's clock)."""

    owner: str  # host:pid of the driving process; "" if the log does not know it
    expires_at: float
    live: bool  # False: run out, so the saga is stuck and any recoverer may take it


def ends_a_try(event: SagaEvent) -> bool:
    """Whether the event closes tries at a store call (its `tries` of them)."""
    return event.phase in _TRY_ENDS


def tries(events: Sequence[SagaEvent]) -> int:
    """The store calls a saga has tried, over all its steps, drivers and takeovers."""
    return sum(event.tries for event in events if ends_a_try(event))
