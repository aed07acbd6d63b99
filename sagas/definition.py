"""A saga definition: ordered steps, each an action with an optional compensation; and
the rules that read a saga's record against it: is it past its pivot, what does undoing
it undo, and what does resuming it do (`resumption`, which the engine acts on and
`--dry-run` tells)."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

from sagas.records import SagaRecord, SagaStatus

P = TypeVar("P")  # a saga's payload, as its steps take it

Action = Callable[[str, P], Awaitable[None]]
Probe = Callable[[str, P], Awaitable[bool]]


@dataclass(frozen=True)
class Step(Generic[P]):
    name: str
    action: Action[P]
    compensation: Action[P] | None = None
    # The fact check: whether the action's effect is in its store, read there. Asked
    # when the driver cannot tell (its answer was lost), before acting on not knowing.
    landed: Probe[P] | None = None


@dataclass(frozen=True)
class SagaDefinition(Generic[P]):
    """Steps up to and including `pivot` are undone on failure; after it, only forward.

    The saga log keeps the payload as a mapping (`encode`); a driver decodes it once per
    drive (`bind`) and hands every step the typed value.
    """

    name: str
    steps: tuple[Step[P], ...]
    pivot: str
    encode: Callable[[P], dict[str, Any]]
    decode: Callable[[Mapping[str, Any]], P]

    def __post_init__(self) -> None:
        names = [step.name for step in self.steps]
        if self.pivot not in names:
            raise ValueError(f"pivot {self.pivot!r} is not a step of {self.name}")
        if self.step(self.pivot).landed is None:
            raise ValueError(f"pivot {self.pivot!r} of {self.name} needs a fact check")

    def step(self, name: str) -> Step[P]:
        return next(s for s in self.steps if s.name == name)

    def bind(self, record: SagaRecord) -> SagaRecord:
        """The record with its payload decoded for the steps, if it is not yet: a drive
        decodes it once, and every record it moves on to carries the typed value."""
        if record.arguments is not None:
            return record
        return replace(record, arguments=self.decode(record.payload))

    async def pivot_landed(self, record: SagaRecord) -> bool:
        """Whether the pivot took effect: what decides a saga's direction on recovery."""
        landed = self.step(self.pivot).landed
        assert landed is not None  # checked at construction
        return await landed(record.saga_id, record.arguments)

    @property
    def before_pivot(self) -> tuple[str, ...]:
        names = [step.name for step in self.steps]
        return tuple(names[: names.index(self.pivot)])

    @property
    def through_pivot(self) -> tuple[str, ...]:
        return (*self.before_pivot, self.pivot)

    @property
    def after_pivot(self) -> tuple[str, ...]:
        return tuple(step.name for step in self.steps if step.name not in self.through_pivot)

    def past_pivot(self, record: SagaRecord) -> bool:
        """Whether the saga can only go forward: its pivot took effect and it is not being
        undone (a saga compensating since before its pivot landed stays compensating)."""
        return self.pivot in record.done and not record.compensating

    def verdict(self, record: SagaRecord | None) -> Verdict:
        """What a saga's record says of its outcome, for a driver that lost the saga and
        must answer for it: it stands once past its pivot (or parked there); it was undone
        once finished otherwise; until then (undecided, or still being undone, its
        effects still in the stores) it is open. A record that is gone tells nothing."""
        if record is None:
            return Verdict.OPEN
        if self.past_pivot(record) or record.status is SagaStatus.COMPLETED:
            return Verdict.STANDS
        if record.status.finished:
            return Verdict.UNDONE
        return Verdict.OPEN

    def steps_left(self, record: SagaRecord) -> tuple[Step[P], ...]:
        """The steps going forward still has to run, in order."""
        return tuple(step for step in self.steps if step.name not in record.done)

    def to_undo(self, record: SagaRecord, *, in_doubt: str | None) -> tuple[str, ...]:
        """The steps a compensation undoes, in order: `in_doubt` (a step whose effect is
        unknown) first, then the done ones in reverse."""
        first = (in_doubt,) if in_doubt is not None else ()
        return (*first, *reversed(record.done))

    def resumption(self, record: SagaRecord) -> Resumption:
        """What resuming this saga does: the one decision `resume` acts on and --dry-run
        tells. Only the record is read; BY_THE_PIVOT leaves the choice to the pivot's fact."""
        if record.status.finished:
            return Resumption(Direction.NOTHING)
        if record.compensating:
            return Resumption(
                Direction.BACKWARD, undo=self.to_undo(record, in_doubt=record.in_progress)
            )
        if self.past_pivot(record):
            left = tuple(step.name for step in self.steps_left(record))
            return Resumption(Direction.FORWARD, forward=left)
        # The log does not say how far the driver got: through its pivot, every step may
        # have taken effect (undoing one that did not is a no-op).
        return Resumption(
            Direction.BY_THE_PIVOT, forward=self.after_pivot, undo=self.through_pivot[::-1]
        )


class Verdict(enum.StrEnum):
    STANDS = "stands"
    UNDONE = "undone"
    OPEN = "open"


class Direction(enum.StrEnum):
    NOTHING = "nothing"  # the saga is finished
    FORWARD = "forward"  # past its pivot
    BACKWARD = "backward"  # being compensated
    BY_THE_PIVOT = "by the pivot"  # forward if the pivot took effect, else backward


@dataclass(frozen=True)
class Resumption:
    """Where resuming a saga takes it, and through which steps."""

    direction: Direction
    forward: tuple[str, ...] = ()  # the steps run forward (BY_THE_PIVOT: if it landed)
    undo: tuple[str, ...] = ()  # the steps undone, in order (BY_THE_PIVOT: if it did not)


def plan(definition: SagaDefinition[Any], record: SagaRecord) -> str:
    """What `resume` would do with this saga, in one line (for --dry-run)."""
    resumption = definition.resumption(record)
    forward, undo = ", ".join(resumption.forward), ", ".join(resumption.undo)
    match resumption.direction:
        case Direction.NOTHING:
            return f"nothing: the saga is {record.status.value}"
        case Direction.BACKWARD:
            return f"compensate: undo {undo}" if undo else "compensate: nothing to undo"
        case Direction.FORWARD:
            return f"drive forward: {forward}"
    return (
        f"check whether {definition.pivot} took effect; if so drive forward: "
        f"{forward or 'nothing left'}; if not compensate: undo {undo}"
    )
