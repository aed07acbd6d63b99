"""Proxies between the app and each real store, for tests that cut a store away."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

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
