"""A saga definition: ordered steps, each an action with an optional compensation."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

Action = Callable[[str, Mapping[str, Any]], Awaitable[None]]
Probe = Callable[[str, Mapping[str, Any]], Awaitable[bool]]


@dataclass(frozen=True)
class Step:
    name: str
    action: Action
    compensation: Action | None = None


@dataclass(frozen=True)
class SagaDefinition:
    """Steps up to and including `pivot` are undone on failure; after it, only forward."""

    name: str
    steps: tuple[Step, ...]
    pivot: str
    # Tells a recoverer whether the pivot took effect when its driver died mid-step.
    pivot_landed: Probe

    def __post_init__(self) -> None:
        names = [step.name for step in self.steps]
        if self.pivot not in names:
            raise ValueError(f"pivot {self.pivot!r} is not a step of {self.name}")

    def is_past_pivot(self, step: Step) -> bool:
        names = [s.name for s in self.steps]
        return names.index(step.name) > names.index(self.pivot)

    def step(self, name: str) -> Step:
        return next(s for s in self.steps if s.name == name)
