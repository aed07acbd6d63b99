"""The pause between tries at a store that is away."""

from __future__ import annotations

from orchestrator.saga.backoff import Backoff


def test_pauses_grow_to_the_cap_and_stay_under_it_however_long_the_outage():
    backoff = Backoff(base_seconds=0.05, cap_seconds=1.0)

    assert 0 <= backoff.delay(1) <= 0.05
    assert all(0 <= backoff.delay(retry) <= 1.0 for retry in (5, 50, 5_000, 10**6))
