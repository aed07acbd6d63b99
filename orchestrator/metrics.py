"""Prometheus metrics: every metric the service exports, defined in one place.

With several worker processes the numbers are kept in files under
PROMETHEUS_MULTIPROC_DIR (set by `coupon-service` before the workers fork), and /metrics
adds up all workers, so a scrape through the shared port sees the whole gateway.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

from sagas.records import SagaRecord, SagaStatus

SAGAS_STARTED = Counter("saga_started_total", "Sagas started.", ["saga"])
SAGAS_COMPLETED = Counter("saga_completed_total", "Sagas that ran to their end.", ["saga"])
SAGAS_COMPENSATED = Counter("saga_compensated_total", "Sagas undone to their start.", ["saga"])
SAGAS_FAILED = Counter("saga_failed_total", "Sagas parked as failed for an operator.", ["saga"])
SAGAS_RECOVERED = Counter(
    "saga_recovered_total",
    "Sagas taken over from a dead or stalled driver, by the status recovery left them in.",
    ["saga", "status"],
)
STEP_RETRIES = Counter(
    "saga_step_retries_total",
    "Store calls of a saga step (or its undo) tried again after a transient failure.",
    ["saga", "step"],
)
SAGA_DURATION = Histogram(
    "saga_duration_seconds",
    "From a saga's start to its end (completed, compensated or failed).",
    ["saga", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)

_ENDED = {
    SagaStatus.COMPLETED: SAGAS_COMPLETED,
    SagaStatus.COMPENSATED: SAGAS_COMPENSATED,
    SagaStatus.FAILED: SAGAS_FAILED,
}


def saga_ended(record: SagaRecord, now: float) -> None:
    """Count a saga that reached a final status (or was parked), and how long it took."""
    counter = _ENDED.get(record.status)
    if counter is None:
        return
    counter.labels(record.name).inc()
    SAGA_DURATION.labels(record.name, record.status.value).observe(now - record.created_at)


def exposition() -> tuple[bytes, str]:
    """The text a scrape gets, and its content type."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
