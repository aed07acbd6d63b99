"""All settings, from the environment (and an optional .env file), in one object."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from pathlib import Path
from typing import Literal, Self

from dotenv import dotenv_values
from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, SettingsConfigDict

from orchestrator.store_addresses import (
    PRIMARY_ATTRIBUTES,
    postgres_hosts,
    sentinel_addresses,
    target_session_attrs,
    without_password,
)
from services.redis_keys import DEFAULT_PREFIX

ENV_FILE = ".env"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=ENV_FILE, extra="ignore", frozen=True)

    host: str = "0.0.0.0"  # the address the gateway listens on (`make run`: 127.0.0.1 unless set)
    port: int = Field(8080, ge=0, le=65535)  # the port it listens on
    # Gateway processes sharing the port; 0: one per CPU the process may use (at most 8).
    workers: int = Field(1, ge=0)
    # The least level a line must have to be logged; the logs are JSON lines on stdout.
    log_level: Literal["debug", "info", "warning", "error", "critical"] = "info"

    # The stock's PostgreSQL. Several hosts (a primary and its standbys) with
    # target_session_attrs=read-write: each connection is made to the one that is the primary.
    database_url: str = "postgresql://postgres@127.0.0.1:5432/coupons"
    mongo_url: str = "mongodb://127.0.0.1:27017"  # a replica set's URL as it is
    mongo_db: str = "coupons"  # the database that holds the claim documents
    redis_url: str = "redis://127.0.0.1:6379/0"  # the saga log's Redis
    # Redis Sentinel: the sentinels (host:port,...; empty: none) and the name of the master
    # they watch. The data connections go to the master they name; REDIS_URL then gives
    # only the password, db and TLS of the data nodes.
    redis_sentinels: str = ""
    redis_sentinel_master: str = Field("", validate_default=True)
    # Durable saga-log writes: after each fenced write, WAIT until this many replicas have
    # it, for up to redis_wait_timeout_ms (services/replica_wait.py). 0: off.
    redis_wait_replicas: int = Field(0, ge=0)
    redis_wait_timeout_ms: int = Field(100, ge=1)
    # What sits between the service and PostgreSQL. "transaction": a transaction pooler
    # (PgBouncer pool_mode=transaction), which may run each transaction on another
    # server connection, so no prepared statement may outlive the one it was made in.
    pg_pooler: Literal["none", "transaction"] = "none"
    # Every key the service writes starts with it: services (or tests) sharing a Redis
    # keep their saga logs apart by it.
    redis_key_prefix: str = Field(DEFAULT_PREFIX, min_length=1)

    # A coupon seen sold out is answered from memory, on a read at most this old; a unit
    # given back by a compensation is claimable again after it at most. 0 turns it off.
    sold_out_memo_seconds: float = Field(1.0, ge=0)
    # Claims that stood, remembered per process so a repeat is answered without a saga
    # (about 200 bytes each); 0 keeps none.
    claimed_memo_entries: int = Field(50_000, ge=0)
    # Connections the whole gateway (every worker) may open to each store, divided among
    # the workers (orchestrator/process/budget.py). PostgreSQL's: postgres:16 allows 100, 3 of
    # them for superusers; the rest is left for the replay tool, psql and monitoring.
    pg_max_connections: int = Field(64, ge=1)
    mongo_max_connections: int = Field(256, ge=1)
    redis_max_connections: int = Field(512, ge=1)
    # Per process, caps on a worker's share of the budget. Few PostgreSQL connections on
    # purpose: the hot stock row gets slower as more transactions queue on its lock, so
    # extra claims wait in the pool instead of in PostgreSQL. Opened in full at start (and
    # MongoDB's too), so a sale does not pay for connecting.
    pg_pool_size: int = Field(16, ge=1)
    redis_pool_size: int = Field(64, ge=1)
    mongo_pool_size: int = Field(64, ge=1)
    # Concurrent sagas in a process share their store round trips (services/batched.py):
    # each step's calls waiting while the previous batch is in flight go in the next.
    store_batching: bool = True
    # How long one store call may take before it counts as unavailable.
    store_timeout_seconds: float = Field(5.0, gt=0)
    # At start, how long to keep trying a store that does not answer yet (with backoff).
    startup_wait_seconds: float = Field(60.0, ge=0)

    # Limits on what one client can make a worker hold (docs/OPERATING.md, "Hostile clients").
    max_body_bytes: int = Field(64 * 1024, ge=1)  # a larger body is refused with 413
    body_timeout_seconds: float = Field(10.0, gt=0)  # to receive a whole body: 408 after
    max_header_bytes: int = Field(8190, ge=256)  # the request line, and each header
    max_headers: int = Field(64, ge=1)  # headers in one request; past it 400
    max_json_depth: int = Field(32, ge=2)  # deeper nesting anywhere in a body is 400
    # Requests in progress per process; past it a request gets 503 at once instead of
    # queueing for a store connection behind thousands of others.
    max_concurrent_requests: int = Field(1024, ge=1)
    # Sagas run at once per process; more claims wait their turn, in arrival order, for
    # up to saga_queue_seconds, then get 503. At most as many as the worker's PostgreSQL
    # connections (budget.py): measured.
    max_concurrent_sagas: int = Field(16, ge=1)
    saga_queue_seconds: float = Field(5.0, gt=0)
    # When set, creating a coupon needs `Authorization: Bearer <token>`.
    admin_token: SecretStr | None = None
    # On SIGTERM: keep serving this long while /ready says 503 (load balancers move away),
    # then stop listening and give requests in progress this long to finish.
    shutdown_drain_seconds: float = Field(2.0, ge=0)
    shutdown_grace_seconds: float = Field(30.0, ge=0)
    saga_retention_seconds: int = Field(7 * 24 * 3600, ge=60)  # finished sagas, in the log
    # A saga refused before it changed anything (unknown coupon, duplicate, no stock) keeps
    # only its record, this long: an anonymous client cannot fill Redis with them.
    saga_refused_retention_seconds: int = Field(60, ge=1)
    # How long a saga step (or its undo) is retried while a store is away, with capped
    # exponential backoff: a store restart shorter than this costs no client a failure.
    # At least two store timeouts (_TIMING_RULES).
    saga_retry_seconds: float = Field(10.0, gt=0)
    # A store call that takes longer than this is abandoned and counts as failed. At least
    # DRIVER_OVERRUN_SECONDS past the store timeout (_TIMING_RULES).
    step_timeout_seconds: float = Field(10.0, gt=0)
    # A saga whose driver has not written for this long is stuck: a recoverer takes it
    # over. Longer than the retries at a step, so no live driver loses it (_TIMING_RULES).
    saga_lease_seconds: float = Field(60.0, gt=0)
    recovery_interval_seconds: float = Field(5.0, gt=0)  # how often to look for stuck sagas
    # Takeovers of one saga whose drivers died or stalled on it before it is parked failed.
    saga_max_recoveries: int = Field(5, ge=1)
    # A unit held this long whose saga record is gone (Redis lost data) is settled from
    # the facts. Longer than a lease and the retries, so no live driver is overtaken
    # (_TIMING_RULES).
    hold_settle_seconds: float = Field(120.0, gt=0)

    @model_validator(mode="after")
    def _timings_fit_together(self) -> Self:
        broken = [message for holds, message in _TIMING_RULES if not holds(self)]
        if broken:
            raise ValueError("; ".join(broken))
        return self

    @field_validator("log_level", mode="before")
    @classmethod
    def _any_case(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("database_url")
    @classmethod
    def _primary_among_hosts(cls, value: str) -> str:
        if len(postgres_hosts(value)) > 1 and target_session_attrs(value) not in PRIMARY_ATTRIBUTES:
            raise ValueError(
                "it names several hosts: add target_session_attrs=read-write, so that every "
                "connection goes to the primary (asyncpg would take any host that answers)"
            )
        return value

    @field_validator("redis_sentinels")
    @classmethod
    def _sentinels(cls, value: str, info: ValidationInfo) -> str:
        sentinel_addresses(value)
        redis_url = info.data.get("redis_url", "")
        if value and not redis_url.startswith(("redis://", "rediss://")):
            raise ValueError("with Sentinel, REDIS_URL must be redis:// or rediss://")
        return value

    @field_validator("redis_sentinel_master")
    @classmethod
    def _master_named(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("redis_sentinels") and not value:
            raise ValueError("REDIS_SENTINELS is set: name the master they watch")
        return value


# How long past STORE_TIMEOUT_SECONDS a driver may take to end its own call: PyMongo checks
# its deadline between waits for a server of up to 0.5 s (MIN_HEARTBEAT_INTERVAL), and a
# busy event loop adds to that. Measured under 150 claims/s with FerretDB killed: step
# timeouts of +0.5 s and +0.75 s cut PyMongo in those waits and wedged a client; +1 s did not.
DRIVER_OVERRUN_SECONDS = 1.0

# The rules between timing settings, each with what breaks without it (docs/CONFIGURATION.md).
_TIMING_RULES: tuple[tuple[Callable[[Settings], bool], str], ...] = (
    (
        lambda s: s.saga_lease_seconds > s.saga_retry_seconds,
        "SAGA_LEASE_SECONDS must be longer than SAGA_RETRY_SECONDS: a driver still "
        "retrying a step would otherwise be taken over",
    ),
    (
        lambda s: s.saga_retry_seconds >= 2 * s.store_timeout_seconds,
        "SAGA_RETRY_SECONDS must be at least twice STORE_TIMEOUT_SECONDS: a try that timed "
        "out may still land, and the next try must find it before an undo races it",
    ),
    (
        lambda s: s.step_timeout_seconds >= s.store_timeout_seconds + DRIVER_OVERRUN_SECONDS,
        f"STEP_TIMEOUT_SECONDS must be at least STORE_TIMEOUT_SECONDS + "
        f"{DRIVER_OVERRUN_SECONDS:g}: the drivers must end their own calls, and PyMongo "
        "looks at its deadline only between half-second waits for a server (cancelled in "
        "one on Python 3.11 it wedged its client until restart)",
    ),
    (
        lambda s: s.hold_settle_seconds > s.saga_lease_seconds + s.saga_retry_seconds,
        "HOLD_SETTLE_SECONDS must be longer than SAGA_LEASE_SECONDS + SAGA_RETRY_SECONDS: "
        "a live driver's held unit would otherwise be settled under it",
    ),
    (
        lambda s: (
            not s.redis_wait_replicas or s.redis_wait_timeout_ms <= s.store_timeout_seconds * 500
        ),
        "REDIS_WAIT_TIMEOUT_MS must be at most half of STORE_TIMEOUT_SECONDS: a WAIT that "
        "runs its course ends at Redis's next tick after it (up to 100 ms later at hz 10), "
        "and one past the store timeout would count as Redis away",
    ),
)


class SettingsError(ValueError):
    """Settings that do not validate: one line per bad setting, naming it and what to do."""


def load_settings() -> Settings:
    """The settings from the environment and .env, or a SettingsError fit to show a person."""
    try:
        return Settings()
    except ValidationError as error:
        raise SettingsError("\n".join(_explain(problem) for problem in error.errors())) from None


def _explain(problem: ErrorDetails) -> str:
    field = str(problem["loc"][0]) if problem["loc"] else ""
    if not field:  # a rule between settings: its message names them
        rules = problem["msg"].removeprefix("Value error, ")
        return f"{rules}; fix it in the environment or {ENV_FILE}"
    secret = field == "admin_token"  # never echoed; nor a URL's password
    given = "" if secret or not field else f"={without_password(str(problem['input']))}"
    return (
        f"{field.upper()}{given} is not valid: {problem['msg']}; "
        f"fix it in the environment or {ENV_FILE}"
    )


def misspelt_in_env_file(path: Path = Path(ENV_FILE)) -> list[str]:
    """A warning for each name in .env that is no setting but looks like one (it is ignored)."""
    if not path.is_file():
        return []
    known = [name.upper() for name in Settings.model_fields]
    warnings = []
    for name in dotenv_values(path):
        if name.upper() in known:
            continue
        if close := difflib.get_close_matches(name.upper(), known, n=1, cutoff=0.75):
            warnings.append(
                f"{path} sets {name}, which is no setting (did you mean {close[0]}?); it is ignored"
            )
    return warnings
