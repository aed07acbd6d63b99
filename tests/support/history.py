"""A saga's history read for what it did to the stores: each effect at most once."""

from __future__ import annotations

from collections import Counter

from sagas.records import Phase, SagaEvent

# Events that stand for an effect on a store (or its end): each at most once per saga.
EFFECTS = {
    ("reserve", Phase.SUCCEEDED),
    ("record", Phase.SUCCEEDED),
    ("record", Phase.RECOVERED),  # the same effect, found landed by a recoverer
    ("confirm", Phase.SUCCEEDED),
    ("reserve", Phase.COMPENSATED),
    ("record", Phase.COMPENSATED),
}


def effects(history: list[SagaEvent]) -> Counter[tuple[str, str]]:
    counted: Counter[tuple[str, str]] = Counter()
    for event in history:
        if (event.step, event.phase) in EFFECTS:
            counted[(event.step, event.phase.value)] += 1
        if event.phase is Phase.FINISHED:
            counted[("*", "finished")] += 1
    return counted
