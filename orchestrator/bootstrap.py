"""The one place that opens the stores and builds the service, for the app, the CLI and tests."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from pymongo import AsyncMongoClient

from orchestrator import metrics
from orchestrator.claims.admission import Admission
from orchestrator.claims.coupons import CouponService, still_open
from orchestrator.claims.duplicates import RepeatClaims
from orchestrator.claims.outages import StoresAway
from orchestrator.claims.soldout import SoldOutMemo
from orchestrator.metrics import MongoPoolMetrics
from orchestrator.reconciler import Reconciler
from orchestrator.redis_connections import redis_pool
from orchestrator.replication_watch import ReplicationWatch
from orchestrator.saga.engine import AfterStep, SagaEngine, describe
from orchestrator.saga.recovery import Recoverer
from orchestrator.saga.retry_policy import RetryPolicy
from orchestrator.settings import Settings
from orchestrator.store_addresses import retryable_writes
from sagas.audit import Auditor
from sagas.claim import claim_saga
from sagas.errors import StoreUnavailable
from sagas.lineage import Reconciliation
from services.batched import BatchedClaims, BatchedInventory, BatchedSagaLog
from services.claims import MongoClaims
from services.failures import unavailable_on_failure
from services.inventory import PostgresInventory, reset_connection, statement_cache_size
from services.inventory_schema import apply_schema, check_schema
from services.mongo_client import Client, CurrentMongoClient
from services.redis_keys import RedisKeys
from services.replica_wait import ReplicaWait
from services.saga_log import RedisSagaLog

log = logging.getLogger(__name__)

# While claims are refused for a store away, how often the stores are asked again.
STORES_AWAY_PROBE_SECONDS = 1.0


async def wait_for(store: str, attempt: Callable[[], Awaitable[None]], seconds: float) -> None:
    """Run `attempt` until the store answers, backing off, for up to `seconds`.

    A service started together with its stores (docker compose, a rolling deploy) comes
    up once they do, saying what it waits for, instead of dying at the first refusal.
    """
    deadline = time.monotonic() + seconds
    delay, tries = 0.25, 1
    while True:
        try:
            await attempt()
        except StoreUnavailable as error:
            if time.monotonic() + delay > deadline:
                log.error("%s did not answer: %s", store, describe(error))
                raise
            log.warning("waiting for %s (try %d): %s", store, tries, describe(error))
            await asyncio.sleep(delay)
            delay, tries = min(delay * 2, 5.0), tries + 1
        else:
            log.info("%s is ready", store)
            return


@asynccontextmanager
async def postgres_pool(
    settings: Settings, prepare: Callable[[asyncpg.Pool], Awaitable[None]] = apply_schema
) -> AsyncIterator[asyncpg.Pool]:
    """`prepare`: the service applies what is missing of the schema; a client checks it."""
    pools: list[asyncpg.Pool] = []
    store_timeout = RetryPolicy.from_settings(settings).store_timeout_seconds

    async def connect() -> None:
        with unavailable_on_failure("postgresql"):
            pool = await asyncpg.create_pool(
                settings.database_url,
                # Opened in full and kept open: a sale that starts after a quiet hour
                # does not pay for connecting in its first second.
                min_size=settings.pg_pool_size,
                max_size=settings.pg_pool_size,
                max_inactive_connection_lifetime=0,
                command_timeout=store_timeout,
                timeout=store_timeout,
                reset=reset_connection,
                statement_cache_size=statement_cache_size(settings.pg_pooler),
            )
        try:
            await prepare(pool)
        except BaseException:
            await close_pool(pool, store_timeout)
            raise
        pools.append(pool)

    await wait_for("postgresql", connect, settings.startup_wait_seconds)
    try:
        yield pools[0]
    finally:
        await close_pool(pools[0], store_timeout)


async def close_pool(pool: asyncpg.Pool, seconds: float) -> None:
    """Close gracefully for up to `seconds`, then drop what is left: a server that hangs
    never answers the goodbye, and the process must still stop (asyncpg's own close
    raises instead, with the connections still open)."""
    try:
        async with asyncio.timeout(seconds):
            await pool.close()
    except Exception as error:  # any failure to say goodbye ends the same way
        log.warning("postgresql connections dropped at close: %s", describe(error))
        pool.terminate()


def new_mongo_client(settings: Settings, *, monitoring: str = "auto") -> Client:
    """`monitoring`: "auto" streams (a monitor and an RTT connection per server, counted
    in the budget); "poll" keeps one, for a small client.

    PyMongo ends its own calls at the store timeout (`timeoutMS`); nothing of ours cancels
    them (services/mongo_client.py)."""
    return _mongo_client(settings, settings.mongo_pool_size, monitoring, [MongoPoolMetrics()])


def lone_mongo_client(settings: Settings) -> Client:
    """One connection, a polling monitor, no metrics: to ask the server whether it answers
    a new client (orchestrator/mongo_renewal.py)."""
    return _mongo_client(settings, 1, "poll", [])


def _mongo_client(
    settings: Settings, pool_size: int, monitoring: str, listeners: list[MongoPoolMetrics]
) -> Client:
    timeout_ms = int(RetryPolicy.from_settings(settings).store_timeout_seconds * 1000)
    return AsyncMongoClient(
        settings.mongo_url,
        maxPoolSize=pool_size,
        minPoolSize=pool_size,  # filled in the background, kept open
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        **retryable_writes(settings.mongo_url),
        timeoutMS=timeout_ms,
        tz_aware=True,
        event_listeners=listeners,
        serverMonitoringMode=monitoring,
    )


@asynccontextmanager
async def mongo_client(
    settings: Settings,
    prepare: Callable[[MongoClaims], Awaitable[None]] = MongoClaims.ensure_indexes,
    *,
    monitoring: str = "auto",
) -> AsyncIterator[CurrentMongoClient]:
    """The client the adapters use (replaceable: orchestrator/mongo_renewal.py); closed
    within the store timeout, so a client that never answers cannot hold up a stop."""
    current = CurrentMongoClient(
        new_mongo_client(settings, monitoring=monitoring), settings.mongo_db
    )
    try:
        claims = MongoClaims(current)
        await wait_for("mongodb", lambda: prepare(claims), settings.startup_wait_seconds)
        yield current
    finally:
        await current.close(RetryPolicy.from_settings(settings).store_timeout_seconds)


@asynccontextmanager
async def redis_client(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    """REDIS_URL's server, or the master REDIS_SENTINELS name (redis_connections.py)."""
    store_timeout = RetryPolicy.from_settings(settings).store_timeout_seconds
    async with redis_pool(settings, store_timeout) as pool:
        client = aioredis.Redis(connection_pool=pool)

        async def ping() -> None:
            with unavailable_on_failure("redis"):
                await client.ping()

        try:
            await wait_for("redis", ping, settings.startup_wait_seconds)
            yield client
        finally:
            await client.aclose()


@dataclass(frozen=True)
class Stores:
    pg_pool: asyncpg.Pool
    mongo: CurrentMongoClient
    redis: aioredis.Redis

    async def answering(self, timeout_seconds: float) -> dict[str, bool]:
        """Each store by name, True if it answered a trivial request in time; all three
        asked at once."""
        # Each store call is made inside its own probe: one made before a cancellation
        # reaches it would be left never awaited.
        probes: dict[str, Callable[[], Awaitable[object]]] = {
            "postgresql": lambda: self.pg_pool.fetchval("SELECT 1"),
            "mongodb": lambda: self.mongo.ping(),
            "redis": lambda: self.redis.ping(),
        }

        async def answers(probe: Callable[[], Awaitable[object]]) -> bool:
            try:
                async with asyncio.timeout(timeout_seconds):
                    await probe()
                return True
            except Exception:  # whatever the driver raises, the store did not answer
                return False

        found = dict(zip(probes, await asyncio.gather(*map(answers, probes.values())), strict=True))
        if not found["postgresql"]:
            # After a restart every pooled connection is dead, and would fail one call
            # each before the pool replaced it: replace them all at their next checkout.
            await self.pg_pool.expire_connections()
        return found

    async def not_answering(self, timeout_seconds: float) -> list[str]:
        return [store for store, up in (await self.answering(timeout_seconds)).items() if not up]


@dataclass(frozen=True)
class Components:
    coupons: CouponService
    recoverer: Recoverer
    auditor: Auditor
    inventory: PostgresInventory
    claims: MongoClaims
    saga_log: RedisSagaLog
    engine: SagaEngine
    reconciler: Reconciler

    async def close(self) -> None:
        """Before the stores close under them: the sagas already answered finish (for a
        while), and undos still retried in the background stop, left to recovery."""
        await self.coupons.close()
        await self.engine.close()
        await self.reconciler.close()

    async def warm_up(self, redis_connections: int) -> None:
        """Before the gateway listens: the stock reconciled if PostgreSQL is on a history
        it was not reconciled on (sagas/lineage.py); PostgreSQL statements prepared on
        every pooled connection, Redis connections open and its scripts loaded. A gateway
        started for a sale otherwise pays for them in its first second
        (docs/PERFORMANCE.md)."""
        await self.reconciler.run_now()
        try:
            await self.inventory.warm_up()
            await self.saga_log.warm_up(redis_connections)
        except StoreUnavailable as error:  # a cold start is slower, not wrong
            log.warning("warm-up cut short: %s", describe(error))


def redis_saga_log(settings: Settings, client: aioredis.Redis) -> RedisSagaLog:
    """The saga log as this process writes it: its keys, retentions, and its name as owner."""
    options: dict[str, Any] = {
        "keys": RedisKeys(settings.redis_key_prefix),
        "lease_seconds": settings.saga_lease_seconds,
        "retention_seconds": settings.saga_retention_seconds,
        "refused_retention_seconds": settings.saga_refused_retention_seconds,
        "owner": process_name(),
        "replica_wait": ReplicaWait(
            settings.redis_wait_replicas, settings.redis_wait_timeout_ms, ReplicationWatch()
        ),
    }
    if settings.store_batching:
        return BatchedSagaLog(client, observe=metrics.batch_sent, **options)
    return RedisSagaLog(client, **options)


def process_name() -> str:
    """This process, as the owner of the sagas it drives: host:pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _adapters(
    settings: Settings, stores: Stores, reconciler: Reconciler
) -> tuple[PostgresInventory, MongoClaims]:
    """PostgreSQL's and MongoDB's adapters: batching concurrent sagas' calls, or not."""
    if settings.store_batching:
        return (
            BatchedInventory(
                stores.pg_pool, observe=metrics.batch_sent, on_unreconciled=reconciler.poke
            ),
            BatchedClaims(stores.mongo, observe=metrics.batch_sent),
        )
    return (
        PostgresInventory(stores.pg_pool, on_unreconciled=reconciler.poke),
        MongoClaims(stores.mongo),
    )


def build(settings: Settings, stores: Stores, *, after_step: AfterStep | None = None) -> Components:
    """`after_step`: a test's fault hook, run after each saga step's action (engine.py)."""
    reconciler = Reconciler()
    inventory, claims = _adapters(settings, stores, reconciler)
    saga_log = redis_saga_log(settings, stores.redis)
    policy = RetryPolicy.from_settings(settings)
    engine = SagaEngine(
        saga_log, lease_seconds=settings.saga_lease_seconds, policy=policy, after_step=after_step
    )
    claim = claim_saga(inventory, claims)
    reconciler.bind(Reconciliation(inventory, claims, saga_log, {claim.name: claim}))
    metrics.start_at_zero([claim])
    auditor = Auditor(
        inventory, claims, saga_log, settle_after_seconds=settings.hold_settle_seconds
    )
    recoverer = Recoverer(
        saga_log,
        engine,
        {claim.name: claim},
        owner=process_name(),
        max_recoveries=settings.saga_max_recoveries,
    )
    sold_out = SoldOutMemo(inventory, settings.sold_out_memo_seconds)
    admission = Admission(settings.max_concurrent_sagas, settings.saga_queue_seconds)
    repeats = RepeatClaims(
        settings.claimed_memo_entries,
        settings.sold_out_memo_seconds,
        still_open=still_open(saga_log, claim),
    )
    stores_away = StoresAway(
        lambda: stores.not_answering(policy.store_timeout_seconds),
        probe_seconds=min(STORES_AWAY_PROBE_SECONDS, policy.store_timeout_seconds),
    )
    coupons = CouponService(
        inventory,
        claims,
        engine,
        claim,
        sold_out,
        admission,
        repeats,
        stores_away,
        saga_log,
        finish_seconds=policy.retry_seconds + policy.step_timeout_seconds,
    )
    return Components(coupons, recoverer, auditor, inventory, claims, saga_log, engine, reconciler)


@asynccontextmanager
async def open_stores(settings: Settings) -> AsyncIterator[Stores]:
    async with AsyncExitStack() as stack:
        yield Stores(
            await stack.enter_async_context(postgres_pool(settings)),
            await stack.enter_async_context(mongo_client(settings)),
            await stack.enter_async_context(redis_client(settings)),
        )


@asynccontextmanager
async def open_components(settings: Settings) -> AsyncIterator[Components]:
    """All three stores and everything on top, for the replay tool and tests."""
    async with open_stores(settings) as stores:
        components = build(settings, stores)
        try:
            await components.reconciler.run_now()
            yield components
        finally:
            await components.close()


@asynccontextmanager
async def open_tool_components(settings: Settings) -> AsyncIterator[Components]:
    """The replay tool's: a small client of the service's stores (settings from
    `budget.for_the_tool`) that checks the schema is there and applies none of it."""
    async with AsyncExitStack() as stack:
        stores = Stores(
            await stack.enter_async_context(postgres_pool(settings, check_schema)),
            await stack.enter_async_context(
                mongo_client(settings, MongoClaims.check_indexes, monitoring="poll")
            ),
            await stack.enter_async_context(redis_client(settings)),
        )
        components = build(settings, stores)
        try:
            yield components
        finally:
            await components.close()
