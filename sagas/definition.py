"""A saga definition: ordered steps, each an action with an optional compensation."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sagas.records import SagaRecord

Action = Callable[[str, Mapping[str, Any]], Awaitable[None]]
Probe = Callable[[str, Mapping[str, Any]], Awaitable[bool]]


@dataclass(frozen=True)
class Step:
    name: str
    action: Action
    compensation: Action | None = None
    # The fact check: whether the action's effect is in its store, read there. Asked
    # when the driver cannot tell (its answer was lost), before acting on not knowing.
    landed: Probe | None = None


@dataclass(frozen=True)
class SagaDefinition:
    """Steps up to and including `pivot` are undone on failure; after it, only forward."""

    name: str
    steps: tuple[Step, ...]
    pivot: str

    def __post_init__(self) -> None:
        names = [step.name for step in self.steps]
        if self.pivot not in names:
            raise ValueError(f"pivot {self.pivot!r} is not a step of {self.name}")
        if self.step(self.pivot).landed is None:
            raise ValueError(f"pivot {self.pivot!r} of {self.name} needs a fact check")

    def step(self, name: str) -> Step:
        return next(s for s in self.steps if s.name == name)

    async def pivot_landed(self, saga_id: str, payload: Mapping[str, Any]) -> bool:
        """Whether the pivot took effect: what decides a saga's direction on recovery."""
        landed = self.step(self.pivot).landed
        assert landed is not None  # checked at construction
        return await landed(saga_id, payload)

    @property
    def before_pivot(self) -> tuple[str, ...]:
        names = [step.name for step in self.steps]
        return tuple(names[: names.index(self.pivot)])

    @property
    def through_pivot(self) -> tuple[str, ...]:
        return (*self.before_pivot, self.pivot)


def plan(definition: SagaDefinition, record: SagaRecord) -> str:
    """What `resume` would do with this saga, in one line (for --dry-run)."""
    if record.status.finished:
        return f"nothing: the saga is {record.status.value}"
    if record.compensating:
        undo = [record.step] if record.step not in record.done else []
        undo += list(reversed(record.done))
        return "compensate: undo " + ", ".join(undo) if undo else "compensate: nothing to undo"
    forward = [step.name for step in definition.steps if step.name not in record.done]
    if definition.pivot in record.done:
        return "drive forward: " + ", ".join(forward)
    after = [name for name in forward if name not in definition.through_pivot]
    return (
        f"check whether {definition.pivot} took effect; if so drive forward: "
        f"{', '.join(after) or 'nothing left'}; "
        f"if not compensate: undo {', '.join(reversed(definition.through_pivot))}"
    )
