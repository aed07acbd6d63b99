"""A saga's history as the console draws it: each step of its definition in order, then
the undos in the order a compensation runs them, each with its own events, tries, errors
and times."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sagas.definition import SagaDefinition
from sagas.records import Phase, SagaEvent, tries

_UNDO_PHASES = frozenset({Phase.COMPENSATING, Phase.COMPENSATED, Phase.COMPENSATION_FAILED})
_UNDO = "undo "  # the prefix a retried undo's events carry (store_calls.py)


@dataclass
class Lane:
    """One step forward, or its undo: the events that belong to it."""

    name: str  # "reserve", or "undo reserve"
    pivot: bool = False
    events: list[SagaEvent] = field(default_factory=list)

    @property
    def tries(self) -> int:
        return tries(self.events)

    @property
    def errors(self) -> list[str]:
        return [event.error for event in self.events if event.error]

    @property
    def state(self) -> str:
        """What became of it, by its last event: not started, or that event's phase."""
        return self.events[-1].phase.value if self.events else "not started"

    @property
    def first_at(self) -> float | None:
        return self.events[0].at if self.events else None

    @property
    def last_at(self) -> float | None:
        return self.events[-1].at if self.events else None


@dataclass(frozen=True)
class Timeline:
    lanes: list[Lane]
    saga_events: list[SagaEvent]  # of the saga as a whole: finished, gave up


def lane_of(event: SagaEvent) -> str | None:
    """The lane an event belongs to; None for an event of the whole saga."""
    if event.phase in (Phase.FINISHED, Phase.GAVE_UP):
        return None
    if event.step.startswith(_UNDO):
        return event.step
    if event.phase in _UNDO_PHASES:
        return f"{_UNDO}{event.step}"
    return event.step


def timeline(definition: SagaDefinition[Any] | None, events: Sequence[SagaEvent]) -> Timeline:
    lanes: dict[str, Lane] = {}
    if definition is not None:
        for step in definition.steps:
            lanes[step.name] = Lane(step.name, pivot=step.name == definition.pivot)
        for step in reversed(definition.steps):
            if step.compensation is not None:
                lanes[f"{_UNDO}{step.name}"] = Lane(f"{_UNDO}{step.name}")
    whole: list[SagaEvent] = []
    for event in events:
        name = lane_of(event)
        if name is None:
            whole.append(event)
            continue
        lanes.setdefault(name, Lane(name)).events.append(event)
    return Timeline(list(lanes.values()), whole)
