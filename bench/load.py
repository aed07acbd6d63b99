"""The load generator: fire requests at a fixed concurrency, time each, count statuses."""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

Request = tuple[str, str, dict[str, Any] | None]  # method, path, JSON body


@dataclass
class LoadResult:
    seconds: float
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    bodies: list[tuple[int, Any]] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return 0.0
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class Progress:
    """One line on stderr, redrawn a few times a second; silent when stderr is not a tty."""

    def __init__(self, label: str, total: int) -> None:
        self._label, self._total, self._done = label, total, 0
        self._shown = 0.0
        self._live = sys.stderr.isatty()

    def advance(self) -> None:
        self._done += 1
        now = time.monotonic()
        if self._live and (now - self._shown > 0.2 or self._done == self._total):
            self._shown = now
            filled = int(30 * self._done / self._total)
            bar = "#" * filled + "." * (30 - filled)
            print(f"\r{self._label:12} [{bar}] {self._done}/{self._total}", end="", file=sys.stderr)
            if self._done == self._total:
                print(file=sys.stderr)


async def fire(
    base_url: str,
    requests: Iterable[Request],
    *,
    concurrency: int,
    label: str,
    keep_bodies: bool = False,
) -> LoadResult:
    """Send every request, at most `concurrency` at a time, over keep-alive connections."""
    queue = list(requests)
    progress = Progress(label, len(queue))
    result = LoadResult(seconds=0.0)
    cursor = iter(queue)
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(base_url, connector=connector, timeout=timeout) as http:

        async def worker() -> None:
            for method, path, body in cursor:
                started = time.perf_counter()
                async with http.request(method, path, json=body) as response:
                    payload = await response.read()
                result.latencies.append(time.perf_counter() - started)
                result.statuses[response.status] += 1
                if keep_bodies:
                    result.bodies.append((response.status, payload))
                progress.advance()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        result.seconds = time.perf_counter() - started
    return result
