"""Proxies between the app and each real store, for tests that cut a store away; and
stores that keep what they acknowledged through a crash, for tests that count on it."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from devstack.servers import Server, start_postgres, start_redis
from devstack.stack import StackUrls, running_stack
from orchestrator.settings import Settings
from tests.support.proxy import CuttableProxy


async def _proxy(url: str) -> AsyncIterator[CuttableProxy]:
    proxy = CuttableProxy.for_url(url)
    await proxy.start()
    yield proxy
    await proxy.close()


@pytest.fixture
async def mongo_proxy(settings: Settings) -> AsyncIterator[CuttableProxy]:
    async for proxy in _proxy(settings.mongo_url):
        yield proxy


@pytest.fixture
async def redis_proxy(settings: Settings) -> AsyncIterator[CuttableProxy]:
    async for proxy in _proxy(settings.redis_url):
        yield proxy


@pytest.fixture
async def pg_proxy(settings: Settings) -> AsyncIterator[CuttableProxy]:
    async for proxy in _proxy(settings.database_url):
        yield proxy


@pytest.fixture(scope="session")
def durable_stack(stack: StackUrls) -> Iterator[StackUrls]:
    """A PostgreSQL of its own with fsync, synchronous commits and full-page writes on
    (the session's runs without: a crash there can lose acknowledged commits), and a
    MongoDB on it; the session's Redis."""
    with running_stack({"REDIS_URL": stack.redis_url}, durable=True) as urls:
        yield urls


@pytest.fixture
def own_redis(tmp_path) -> Iterator[Server]:
    """A Redis of the test's own, for tests that fill it, turn it read-only and the like."""
    server = start_redis(tmp_path)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_postgres() -> Iterator[Server]:
    """A PostgreSQL of the test's own: for a test that restarts it, or whose gateway
    settles abandoned holds and must not take other tests' holds (in other saga logs)."""
    root = Path(tempfile.mkdtemp(prefix="coupon-pg-own-"))
    root.chmod(0o755)  # the postgres user must reach its data dir inside
    server = start_postgres(root, databases=("coupons",))
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
