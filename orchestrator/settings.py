"""All settings, from the environment (and an optional .env file), in one object."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.redis_keys import DEFAULT_PREFIX


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    host: str = "0.0.0.0"
    port: int = Field(8080, ge=0, le=65535)
    workers: int = Field(1, ge=0)  # 0: one process per CPU
    log_level: str = "info"

    database_url: str = "postgresql://postgres@127.0.0.1:5432/coupons"
    mongo_url: str = "mongodb://127.0.0.1:27017"
    mongo_db: str = "coupons"
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Every key the service writes starts with it: services (or tests) sharing a Redis
    # keep their saga logs apart by it.
    redis_key_prefix: str = Field(DEFAULT_PREFIX, min_length=1)

    # A coupon seen sold out is answered from memory, on a read at most this old; a unit
    # given back by a compensation is claimable again after it at most. 0 turns it off.
    sold_out_memo_seconds: float = Field(1.0, ge=0)
    # Few connections on purpose: the hot stock row gets slower as more transactions
    # queue on its lock, so extra claims wait in the pool instead of in PostgreSQL.
    # Opened in full at start (and MongoDB's too), so a sale does not pay for connecting.
    pg_pool_size: int = Field(16, ge=1)
    redis_pool_size: int = Field(64, ge=1)
    mongo_pool_size: int = Field(64, ge=1)
    # How long one store call may take before it counts as unavailable.
    store_timeout_seconds: float = Field(5.0, gt=0)
    # At start, how long to keep trying a store that does not answer yet (with backoff).
    startup_wait_seconds: float = Field(60.0, ge=0)

    # Limits on what one client can make a worker hold (README "Limits").
    max_body_bytes: int = Field(64 * 1024, ge=1)
    body_timeout_seconds: float = Field(10.0, gt=0)  # to receive a whole body: 408 after
    max_header_bytes: int = Field(8190, ge=256)  # the request line, and each header
    max_headers: int = Field(64, ge=1)
    max_json_depth: int = Field(32, ge=2)
    # Requests in progress per process; past it a request gets 503 at once instead of
    # queueing for a store connection behind thousands of others.
    max_concurrent_requests: int = Field(1024, ge=1)
    # Sagas run at once per process; more claims wait their turn, in arrival order, for
    # up to saga_queue_seconds, then get 503. As many as PostgreSQL connections: measured.
    max_concurrent_sagas: int = Field(16, ge=1)
    saga_queue_seconds: float = Field(5.0, gt=0)
    # When set, creating a coupon needs `Authorization: Bearer <token>`.
    admin_token: SecretStr | None = None
    # On SIGTERM: keep serving this long while /ready says 503 (load balancers move away),
    # then stop listening and give requests in progress this long to finish.
    shutdown_drain_seconds: float = Field(2.0, ge=0)
    shutdown_grace_seconds: float = Field(30.0, ge=0)
    saga_retention_seconds: int = Field(7 * 24 * 3600, ge=60)
    saga_store_attempts: int = Field(3, ge=1)
    # A store call that takes longer than this is abandoned and counts as failed.
    step_timeout_seconds: float = Field(10.0, gt=0)
    # A saga whose driver has not written for this long is stuck: a recoverer takes it
    # over. Longer than a step's worst case (attempts x timeout), so no live driver loses it.
    saga_lease_seconds: float = Field(60.0, gt=0)
    recovery_interval_seconds: float = Field(5.0, gt=0)
    saga_max_recoveries: int = Field(5, ge=1)
    # A unit held this long whose saga record is gone (Redis lost data) is settled from
    # the facts. Longer than a lease and a step's worst case, so no live driver is overtaken.
    hold_settle_seconds: float = Field(120.0, gt=0)

    # Test only: the process kills itself right after this saga step's action succeeds.
    fault_kill_after: str = ""
    # Test only: right after this step's action the whole process freezes (event loop and
    # all) for `fault_stall_seconds`, like a long GC pause or SIGSTOP: its lease runs out.
    fault_stall_after: str = ""
    fault_stall_seconds: float = Field(0.0, ge=0)
