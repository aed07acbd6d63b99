"""How long each phase took, printed as it ends and once more together at the end."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class Timings:
    def __init__(self) -> None:
        self.phases: list[tuple[str, float, str]] = []  # (phase, seconds, "ok" or "FAILED")

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        print(f"fresh-machine: {name} ...", flush=True)
        started = time.monotonic()
        outcome = "FAILED"
        try:
            yield
            outcome = "ok"
        finally:
            seconds = time.monotonic() - started
            self.phases.append((name, seconds, outcome))
            print(f"fresh-machine: {name}: {outcome} in {_minutes(seconds)}", flush=True)

    def report(self) -> str:
        width = max((len(name) for name, _, _ in self.phases), default=0)
        return "\n".join(
            f"  {name:<{width}}  {_minutes(seconds):>9}  {outcome}"
            for name, seconds, outcome in self.phases
        )


def _minutes(seconds: float) -> str:
    return (
        f"{int(seconds // 60)} min {seconds % 60:02.0f} s" if seconds >= 60 else f"{seconds:.0f} s"
    )
