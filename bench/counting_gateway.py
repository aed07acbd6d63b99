"""`python -m bench.counting_gateway`: `coupon-service` that counts, in each worker, the
Python work its requests cause: log lines, metric updates and label lookups, JSON encodes
and decodes, pydantic validations, MongoDB commands, tasks and futures created.

`bench --explain` starts this instead of `coupon-service`. It is the same gateway, start-up
and workers (orchestrator/main.py); the counting is wrapped around library entry points
here, so the service itself carries none of it and pays nothing for it. While counting,
a worker is slower: a run with --explain counts, it is not a run to time.

Each worker keeps its counts in a file of its own, `$BENCH_COUNTS_DIR/PID.counts` (one
64-bit integer per kind, memory-mapped: counting is an add, with no lock to take), and
bench adds the files up before and after the load. Not a Prometheus counter: the
multiprocess metrics take a lock that is held while they encode JSON, which is counted.

What is not seen: JSON Redis decodes in Lua (cjson: the store's CPU), futures uvloop
creates inside its own C code, and `asyncio.Future()` called directly (nothing on the
claim path does).
"""

from __future__ import annotations

import ctypes
import functools
import json
import mmap
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

COUNTS_DIR = "BENCH_COUNTS_DIR"
KINDS = (
    "log_lines",
    "metric_updates",
    "metric_label_lookups",
    "json_encodes",
    "json_decodes",
    "pydantic_validations",
    "mongodb_commands",
    "tasks_created",
    "futures_created",
)

Count = Callable[[str], None]


def _counted(function: Callable[..., Any], kind: str, count: Count) -> Callable[..., Any]:
    @functools.wraps(function)
    def counting(*args: Any, **kwargs: Any) -> Any:
        count(kind)
        return function(*args, **kwargs)

    return counting


class _CountedCore:
    """A pydantic-core validator or serializer that counts the calls named in `kinds`."""

    def __init__(self, inner: Any, kinds: dict[str, tuple[str, ...]], count: Count) -> None:
        self._inner = inner
        self._kinds = kinds
        self._count = count

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._inner, name)
        kinds = self._kinds.get(name)
        if not kinds:
            return found

        def counting(*args: Any, **kwargs: Any) -> Any:
            for kind in kinds:
                self._count(kind)
            return found(*args, **kwargs)

        return counting


_VALIDATOR_KINDS: dict[str, tuple[str, ...]] = {
    "validate_python": ("pydantic_validations",),
    "validate_strings": ("pydantic_validations",),
    "validate_assignment": ("pydantic_validations",),
    "validate_json": ("pydantic_validations", "json_decodes"),
}
_SERIALIZER_KINDS: dict[str, tuple[str, ...]] = {"to_json": ("json_encodes",)}


def _count_metrics(count: Count) -> None:
    from prometheus_client import Counter, Gauge, Histogram, Summary
    from prometheus_client.metrics import MetricWrapperBase

    updates = {Counter: ("inc",), Gauge: ("inc", "dec", "set"), Histogram: ("observe",)}
    for metric, names in {**updates, Summary: ("observe",)}.items():
        for name in names:
            setattr(metric, name, _counted(getattr(metric, name), "metric_updates", count))
    MetricWrapperBase.labels = _counted(  # type: ignore[method-assign]
        MetricWrapperBase.labels, "metric_label_lookups", count
    )


def _count_json(count: Count) -> None:
    import orjson

    for module in (orjson, json):
        module.dumps = _counted(module.dumps, "json_encodes", count)  # type: ignore[attr-defined]
        module.loads = _counted(module.loads, "json_decodes", count)  # type: ignore[attr-defined]


def _count_pydantic(count: Count) -> None:
    """Every model the gateway defines (imported here, before the app is built) and every
    TypeAdapter."""
    from pydantic import BaseModel, TypeAdapter

    import orchestrator.http.models  # noqa: F401  (defines the request and answer models)

    models: list[type[BaseModel]] = [BaseModel]
    while models:
        model = models.pop()
        models.extend(model.__subclasses__())
        if "__pydantic_validator__" in vars(model) and model is not BaseModel:
            model.__pydantic_validator__ = _CountedCore(  # type: ignore[assignment]
                model.__pydantic_validator__, _VALIDATOR_KINDS, count
            )
            model.__pydantic_serializer__ = _CountedCore(  # type: ignore[assignment]
                model.__pydantic_serializer__, _SERIALIZER_KINDS, count
            )
    for name in ("validate_python", "validate_strings"):
        setattr(
            TypeAdapter, name, _counted(getattr(TypeAdapter, name), "pydantic_validations", count)
        )
    decoding = _counted(TypeAdapter.validate_json, "json_decodes", count)
    TypeAdapter.validate_json = _counted(  # type: ignore[method-assign]
        decoding, "pydantic_validations", count
    )


def _count_logging(count: Count) -> None:
    import logging

    # handle() is reached only by a record its logger's level lets through: a line written.
    logging.Logger.handle = _counted(logging.Logger.handle, "log_lines", count)  # type: ignore[method-assign]


def _count_mongodb(count: Count) -> None:
    from pymongo import monitoring

    class Commands(monitoring.CommandListener):
        def started(self, event: monitoring.CommandStartedEvent) -> None:
            count("mongodb_commands")

        def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
            pass

        def failed(self, event: monitoring.CommandFailedEvent) -> None:
            pass

    monitoring.register(Commands())  # before the app builds its client


def _count_tasks_and_futures(count: Count) -> None:
    import uvloop

    class CountingLoop(uvloop.Loop):
        def create_future(self) -> Any:
            count("futures_created")
            return super().create_future()

        def create_task(self, coro: Any, **options: Any) -> Any:
            count("tasks_created")
            return super().create_task(coro, **options)

    uvloop.new_event_loop = CountingLoop  # orchestrator.main.serve builds its loop so


_WIDTH = 8 * len(KINDS)


def read_counts(directory: Path) -> dict[str, int]:
    """Every worker's counts (those that ever started), added up, by kind."""
    total = dict.fromkeys(KINDS, 0)
    for path in directory.glob("*.counts"):
        values = struct.unpack(f"{len(KINDS)}q", path.read_bytes()[:_WIDTH])
        for kind, value in zip(KINDS, values, strict=True):
            total[kind] += value
    return total


def start_counting(directory: Path) -> None:
    """In a worker, before it builds the app: count every kind into this worker's file."""
    path = directory / f"{os.getpid()}.counts"
    path.write_bytes(bytes(_WIDTH))
    with path.open("r+b") as file:
        mapped = mmap.mmap(file.fileno(), _WIDTH)
    counts = (ctypes.c_int64 * len(KINDS)).from_buffer(mapped)
    index = {kind: number for number, kind in enumerate(KINDS)}

    def count(kind: str) -> None:
        counts[index[kind]] += 1

    _count_metrics(count)
    _count_json(count)
    _count_pydantic(count)
    _count_logging(count)
    _count_mongodb(count)
    _count_tasks_and_futures(count)


def main() -> None:
    from orchestrator import main as gateway

    serve = gateway.serve
    directory = Path(os.environ[COUNTS_DIR])

    @functools.wraps(serve)
    def counting_serve(*args: Any, **kwargs: Any) -> None:
        start_counting(directory)  # in the worker, before it imports the app
        serve(*args, **kwargs)

    gateway.serve = counting_serve
    gateway.main()


if __name__ == "__main__":
    main()
