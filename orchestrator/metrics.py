"""Prometheus metrics: every metric the service exports, defined in one place (and the
line logged when a saga ends, which goes with its count).

With several worker processes the numbers are kept in files under
PROMETHEUS_MULTIPROC_DIR (set by `coupon-service` before the workers fork), and /metrics
adds up all workers, so a scrape through the shared port sees the whole gateway.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from importlib import metadata
from typing import Any

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

from orchestrator.console.reads import ClaimTotals
from sagas.definition import SagaDefinition
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
# services/batched.py: how many sagas' calls shared each store round trip.
STORE_BATCH_SIZE = Histogram(
    "store_batch_size",
    "Calls sent together in one store round trip, by batch (reserve, record, confirm, log).",
    ["batch"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)

# services/replica_wait.py: log writes the master took that fewer replicas than
# REDIS_WAIT_REPLICAS had within REDIS_WAIT_TIMEOUT_MS.
SAGA_LOG_UNREPLICATED = Counter(
    "saga_log_unreplicated_writes_total",
    "Saga log writes done on the Redis master that fewer replicas than REDIS_WAIT_REPLICAS "
    "acknowledged within REDIS_WAIT_TIMEOUT_MS (they stand; a failover may lose them).",
)


def batch_sent(batch: str, size: int) -> None:
    STORE_BATCH_SIZE.labels(batch).observe(size)


SAGAS_STARTED = Counter("saga_started_total", "Sagas started.", ["saga"])
SAGAS_COMPLETED = Counter("saga_completed_total", "Sagas that ran to their end.", ["saga"])
SAGAS_COMPENSATED = Counter(
    "saga_compensated_total",
    "Sagas whose side effects were undone (a real compensation ran).",
    ["saga"],
)
SAGAS_REFUSED = Counter(
    "saga_refused_total",
    "Sagas a business rule ended before any side effect (nothing to undo), by reason.",
    ["saga", "reason"],
)
SAGAS_FAILED = Counter("saga_failed_total", "Sagas parked as failed for an operator.", ["saga"])
SAGAS_RECOVERED = Counter(
    "saga_recovered_total",
    "Sagas taken over from a dead or stalled driver, by the status recovery left them in.",
    ["saga", "status"],
)
SAGAS_STUCK = Gauge(
    "saga_stuck",
    "Sagas whose lease had run out (their driver died or stalled) at the last recovery round.",
    multiprocess_mode="livemax",  # every gateway reads the same saga log
)
STEP_RETRIES = Counter(
    "saga_step_retries_total",
    "Store calls of a saga step (or its undo) tried again after a transient failure.",
    ["saga", "step"],
)
SAGA_DURATION = Histogram(
    "saga_duration_seconds",
    "From a saga's start to its end (completed, compensated, refused or failed).",
    ["saga", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)

ADMISSION_WAITING = Gauge(
    "claim_admission_waiting",
    "Claims waiting for a saga slot (MAX_CONCURRENT_SAGAS per process).",
    multiprocess_mode="livesum",
)
ADMISSION_REFUSED = Counter(
    "claim_admission_refused_total",
    "Claims refused with 503 after waiting SAGA_QUEUE_SECONDS for a saga slot.",
)
CLAIMS_REFUSED_STORE_AWAY = Counter(
    "claims_refused_store_away_total",
    "Claims refused with 503 before taking anything, because a claim's saga had just "
    "failed for a store away and the stores did not all answer since.",
)
SOLD_OUT_MEMO_HITS = Counter(
    "sold_out_memo_hits_total",
    "Claims answered from the sold-out memo (no saga, no store write), by answer.",
    ["answer"],
)
REPEAT_CLAIMS_ANSWERED = Counter(
    "repeat_claims_answered_total",
    "Repeat claims of a (user, coupon) answered without a saga, from the outcome of the "
    "claim in flight or from memory of one that stood, by answer.",
    ["answer"],
)
SOLD_OUT_MEMO_RENEWALS = Counter(
    "sold_out_memo_renewals_total",
    "Reads of a sold-out coupon's stock and holders into the memo (first or renewed).",
)
STORE_UP = Gauge(
    "store_up",
    "1 when the store answered this process's last probe, 0 when it did not.",
    ["store"],
    multiprocess_mode="livemin",  # one worker that cannot reach a store is enough to say so
)
BUILD_INFO = Gauge(
    "coupon_service_build_info",
    "Always 1; the running version in its label.",
    ["version"],
    multiprocess_mode="livemax",
)

STORES = ("postgresql", "mongodb", "redis")
REFUSAL_REASONS = ("out_of_stock", "already_claimed", "coupon_not_found")
REPEAT_ANSWERS = (*REFUSAL_REASONS, "in_doubt")
MEMO_ANSWERS = ("out_of_stock", "already_claimed")
# What recovery can leave a saga in (see Recoverer.recover).
RECOVERED_STATUSES = ("completed", "compensated", "compensating", "running", "failed")


def start_at_zero(definitions: Iterable[SagaDefinition[Any]]) -> None:
    """Every counter gets a 0 sample for each label value known in advance, so
    `increase()` sees the first event after a restart (a series that appears already at
    1 shows no increase)."""
    for definition in definitions:
        saga = definition.name
        for counter in (SAGAS_STARTED, SAGAS_COMPLETED, SAGAS_COMPENSATED, SAGAS_FAILED):
            counter.labels(saga)
        for reason in REFUSAL_REASONS:
            SAGAS_REFUSED.labels(saga, reason)
        for status in RECOVERED_STATUSES:
            SAGAS_RECOVERED.labels(saga, status)
        for step in definition.steps:
            STEP_RETRIES.labels(saga, step.name)
            if step.compensation is not None:
                STEP_RETRIES.labels(saga, f"undo {step.name}")
    for answer in MEMO_ANSWERS:
        SOLD_OUT_MEMO_HITS.labels(answer)
    for answer in REPEAT_ANSWERS:
        REPEAT_CLAIMS_ANSWERED.labels(answer)
    BUILD_INFO.labels(version()).set(1)


def version() -> str:
    try:
        return metadata.version("coupon-service")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def reason(error: BaseException) -> str:
    """An answer given without a saga, or a business rejection, as a label: OutOfStock ->
    out_of_stock; a kind of one (ClaimInFlight, an AlreadyClaimed) as the one it is."""
    for kind in type(error).__mro__:
        label = re.sub(r"(?<!^)(?=[A-Z])", "_", kind.__name__).lower()
        if label in REPEAT_ANSWERS:
            return label
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(error).__name__).lower()


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


def saga_refused(record: SagaRecord, now: float, error: BaseException) -> None:
    """Count a saga a business rule ended before it changed anything (a 409 or 404)."""
    SAGAS_REFUSED.labels(record.name, reason(error)).inc()
    took = now - record.created_at
    SAGA_DURATION.labels(record.name, "refused").observe(took)
    log.debug("saga %s refused (%s) in %.1fms", record.name, reason(error), took * 1e3)


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


def _gateway_registry() -> CollectorRegistry:
    """Every worker's numbers added up (multiprocess), or this process's."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    return REGISTRY


def exposition() -> tuple[bytes, str]:
    """The text a scrape gets, and its content type."""
    return generate_latest(_gateway_registry()), CONTENT_TYPE_LATEST


CLAIM_ROUTE = "/api/coupons/claim"


def claim_totals() -> ClaimTotals:
    """Claims answered since start, every worker together, as the console's live view
    reads them: 200s, 503s, and refusals by reason (by a saga, by the sold-out memo, or
    as a repeat). Read from the counters the claim path keeps anyway; adds nothing to it."""
    claimed = unavailable = 0
    refused: dict[str, int] = dict.fromkeys(REFUSAL_REASONS, 0)
    for family in _gateway_registry().collect():
        for sample in family.samples:
            labels, value = sample.labels, int(sample.value)
            if sample.name == "http_requests_total" and labels.get("route") == CLAIM_ROUTE:
                if labels.get("status") == "200":
                    claimed += value
                elif labels.get("status") == "503":
                    unavailable += value
            elif sample.name == "saga_refused_total":
                refused[labels["reason"]] = refused.get(labels["reason"], 0) + value
            elif sample.name in ("sold_out_memo_hits_total", "repeat_claims_answered_total"):
                answer = labels["answer"]
                if answer in REFUSAL_REASONS:
                    refused[answer] = refused.get(answer, 0) + value
    return ClaimTotals(claimed, unavailable, refused)
