"""Prometheus metrics: every metric the service exports, defined in one place (and the
line logged when a saga ends, which goes with its count).

With several worker processes the numbers are kept in files under
PROMETHEUS_MULTIPROC_DIR (set by `coupon-service` before the workers fork), and /metrics
adds up all workers, so a scrape through the shared port sees the whole gateway.
"""

from __future__ import annotations

import logging
import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from pymongo import monitoring

from sagas.records import SagaRecord, SagaStatus

log = logging.getLogger(__name__)

HTTP_REQUESTS = Counter(
    "http_requests_total", "Requests answered, by route and status.", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "http_request_duration_seconds",
    "Time from a request's arrival to its answer, by route.",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
# Sampled by each worker every few seconds; /metrics adds the workers up.
POOL_CONNECTIONS = Gauge(
    "store_pool_connections",
    "Connections in each store's pool, by state (in_use, idle, max).",
    ["store", "state"],
    multiprocess_mode="livesum",
)

POOL_WAIT = Histogram(
    "store_pool_wait_seconds",
    "Time a store call waited for a connection from its pool.",
    ["store"],
    buckets=(0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5),
)

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
    took = now - record.created_at
    SAGA_DURATION.labels(record.name, record.status.value).observe(took)
    log.debug("saga %s %s in %.1fms", record.name, record.status.value, took * 1e3)


def sample_postgres_pool(size: int, idle: int, maximum: int) -> None:
    POOL_CONNECTIONS.labels("postgresql", "in_use").set(size - idle)
    POOL_CONNECTIONS.labels("postgresql", "idle").set(idle)
    POOL_CONNECTIONS.labels("postgresql", "max").set(maximum)


class MongoPoolMetrics(monitoring.ConnectionPoolListener):
    """PyMongo reports each checkout with how long it waited; asyncpg has no such hook."""

    def connection_checked_out(self, event: monitoring.ConnectionCheckedOutEvent) -> None:
        POOL_CONNECTIONS.labels("mongodb", "in_use").inc()
        if event.duration is not None:
            POOL_WAIT.labels("mongodb").observe(event.duration)

    def connection_checked_in(self, event: monitoring.ConnectionCheckedInEvent) -> None:
        POOL_CONNECTIONS.labels("mongodb", "in_use").dec()

    def pool_created(self, event: monitoring.PoolCreatedEvent) -> None:
        pass

    def pool_ready(self, event: monitoring.PoolReadyEvent) -> None:
        pass

    def pool_cleared(self, event: monitoring.PoolClearedEvent) -> None:
        pass

    def pool_closed(self, event: monitoring.PoolClosedEvent) -> None:
        pass

    def connection_created(self, event: monitoring.ConnectionCreatedEvent) -> None:
        pass

    def connection_ready(self, event: monitoring.ConnectionReadyEvent) -> None:
        pass

    def connection_closed(self, event: monitoring.ConnectionClosedEvent) -> None:
        pass

    def connection_check_out_started(
        self, event: monitoring.ConnectionCheckOutStartedEvent
    ) -> None:
        pass

    def connection_check_out_failed(self, event: monitoring.ConnectionCheckOutFailedEvent) -> None:
        pass


def exposition() -> tuple[bytes, str]:
    """The text a scrape gets, and its content type."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
