"""Session fixtures: real stores (started here or taken from the environment), the real app.

Set DATABASE_URL, MONGO_URL and/or REDIS_URL to test against servers you run; whatever is
not set is started on a free loopback port in a temp dir and stopped at the end.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import redis.asyncio as aioredis
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from devstack.stack import StackUrls, running_stack
from orchestrator.bootstrap import Components, open_components
from orchestrator.claims.coupons import CouponService
from orchestrator.settings import Settings
from tests.support.servers import gateway_process


@pytest.fixture(scope="session")
def stack() -> Iterator[StackUrls]:
    with running_stack() as urls:
        yield urls


@pytest.fixture(scope="session")
def settings(stack: StackUrls) -> Settings:
    return Settings(
        _env_file=None,
        database_url=stack.database_url,
        mongo_url=stack.mongo_url,
        redis_url=stack.redis_url,
        mongo_db="coupons_test",
        log_level="warning",
    )


@pytest.fixture(scope="session")
async def components(settings: Settings) -> AsyncIterator[Components]:
    async with open_components(settings) as built:
        yield built


@pytest.fixture(scope="session")
def service(components: Components) -> CouponService:
    return components.coupons


@pytest.fixture(scope="session")
async def pg(settings: Settings, service: CouponService) -> AsyncIterator[asyncpg.Pool]:
    """A pool of our own for looking at PostgreSQL directly (the schema exists by now)."""
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=4)
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
async def mongo(
    settings: Settings, service: CouponService
) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongo_url, tz_aware=True)
    yield client[settings.mongo_db]
    await client.close()


@pytest.fixture(scope="session")
async def redis(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
def gateway(
    settings: Settings, service: CouponService, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Base URL of a real `coupon-service` with two worker processes sharing its port."""
    log_path: Path = tmp_path_factory.mktemp("gateway") / "gateway.log"
    with gateway_process(settings, log_path) as base_url:
        yield base_url


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        yield session


@pytest.fixture
def name() -> str:
    """A coupon name no other test uses."""
    return f"PROMO_{uuid.uuid4().hex[:12]}"
