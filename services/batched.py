"""The adapters with the claim path's writes batched: concurrent sagas in this process
share one round trip per step (services/batching.py). Same Protocols, same answers per
saga; every other call goes to the store as before.

Each saga still has its own hold, claim document and log record, and gets its own
outcome: a refusal, a lost lease or a store failure reaches only the saga it is about,
and a batch that fails as a whole fails each saga as its own call would have (a batch
that timed out may have applied, for each of them), leaving each to its own retry.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from services.batching import Coalescer
from services.claims import ClaimRequest, MongoClaims
from services.inventory import HoldRequest, PostgresInventory
from services.mongo_client import CurrentMongoClient
from services.saga_log import LogWrite, RedisSagaLog


def _is_uuid(saga_id: str) -> bool:
    """A batch carries only ids PostgreSQL takes as uuid: one that is not would fail the
    whole statement, so it goes alone and fails alone."""
    try:
        uuid.UUID(saga_id)
    except ValueError:
        return False
    return True


# Told each batch's size as it is sent, by the batch's name (reserve, confirm, record, log).
BatchObserver = Callable[[str, int], None]


def _ignore(name: str, size: int) -> None:
    pass


class BatchedInventory(PostgresInventory):
    """reserve and confirm batched; the rest as PostgresInventory."""

    def __init__(
        self, pool: asyncpg.Pool, *, observe: BatchObserver = _ignore, **options: Any
    ) -> None:
        super().__init__(pool, **options)
        self.reserves = Coalescer(self.reserve_many, on_batch=partial(observe, "reserve"))
        self.confirms = Coalescer(self.confirm_many, on_batch=partial(observe, "confirm"))

    async def reserve(self, saga_id: str, coupon_name: str, user_id: str) -> None:
        if _is_uuid(saga_id):
            await self.reserves.submit(HoldRequest(saga_id, coupon_name, user_id))
        else:
            await super().reserve(saga_id, coupon_name, user_id)

    async def confirm(self, saga_id: str) -> None:
        if _is_uuid(saga_id):
            await self.confirms.submit(saga_id)
        else:
            await super().confirm(saga_id)


class BatchedClaims(MongoClaims):
    """record batched; the rest as MongoClaims."""

    def __init__(self, client: CurrentMongoClient, *, observe: BatchObserver = _ignore) -> None:
        super().__init__(client)
        self.records = Coalescer(self.record_many, on_batch=partial(observe, "record"))

    async def record(
        self, saga_id: str, user_id: str, coupon_name: str, claimed_at: datetime
    ) -> datetime:
        return await self.records.submit(ClaimRequest(saga_id, user_id, coupon_name, claimed_at))


class BatchedSagaLog(RedisSagaLog):
    """create, save and refused batched (one pipeline of fenced scripts); the rest as
    RedisSagaLog."""

    def __init__(
        self, client: aioredis.Redis, *, observe: BatchObserver = _ignore, **options: Any
    ) -> None:
        super().__init__(client, **options)
        self.writes = Coalescer(self.apply_many, on_batch=partial(observe, "log"))

    async def _apply(self, write: LogWrite) -> None:
        await self.writes.submit(write)
