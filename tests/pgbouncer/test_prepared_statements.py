"""Why PG_POOLER=transaction exists: the service's own PostgreSQL pool behind PgBouncer.

A statement is run on one server connection; that server is then held in another
client's open transaction, so the statement's next run must go to another server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack

import asyncpg
import pytest

from devstack.pgbouncer import running_pgbouncer
from devstack.servers import Server
from devstack.stack import StackUrls
from orchestrator.bootstrap import postgres_pool
from orchestrator.settings import Settings
from sagas.errors import StoreUnavailable
from services.failures import unavailable_on_failure
from tests.support.settings import changed

# Answers with the server process it ran on.
_WHERE_AM_I = "SELECT pg_backend_pid() WHERE $1::boolean"
_SERVERS = 4


@pytest.fixture
def bouncer(stack: StackUrls) -> Iterator[Server]:
    """A PgBouncer of this test's own: no other client's statements on its servers."""
    with running_pgbouncer(stack.database_url, pool_size=_SERVERS) as server:
        yield server


async def _hold_server(stack: AsyncExitStack, pool: asyncpg.Pool, pid: int) -> None:
    """Open transactions on other clients until one of them sits on server `pid`."""
    for _ in range(_SERVERS):
        connection = await stack.enter_async_context(pool.acquire())
        await stack.enter_async_context(connection.transaction())
        if await connection.fetchval("SELECT pg_backend_pid()") == pid:
            return
    raise AssertionError(f"no client got server {pid}")


@pytest.fixture
async def pool_behind(
    settings: Settings, bouncer: Server, request: pytest.FixtureRequest
) -> AsyncIterator[asyncpg.Pool]:
    behind = changed(
        settings,
        {
            "database_url": bouncer.url,
            "pg_pool_size": _SERVERS + 1,
            "pg_pooler": request.param,
        },
    )
    async with postgres_pool(behind) as pool:
        yield pool


@pytest.mark.parametrize("pool_behind", ["transaction"], indirect=True)
async def test_with_the_setting_a_statement_runs_on_whichever_server_it_gets(pool_behind):
    async with pool_behind.acquire() as connection:
        first = await connection.fetchval(_WHERE_AM_I, True)
        async with AsyncExitStack() as held:
            await _hold_server(held, pool_behind, first)

            assert await connection.fetchval(_WHERE_AM_I, True) not in (first, None)


@pytest.mark.parametrize("pool_behind", ["none"], indirect=True)
async def test_without_it_a_prepared_statement_is_missing_on_the_next_server(pool_behind):
    """A misconfigured service still gives no false answer: the store is unavailable (503,
    retried: the next try may land where the statement is), never a 500."""
    async with pool_behind.acquire() as connection:
        first = await connection.fetchval(_WHERE_AM_I, True)
        async with AsyncExitStack() as held:
            await _hold_server(held, pool_behind, first)

            with pytest.raises(StoreUnavailable) as caught, unavailable_on_failure("postgresql"):
                await connection.fetchval(_WHERE_AM_I, True)
    assert isinstance(caught.value.__cause__, asyncpg.InvalidSQLStatementNameError)
    assert "does not exist" in str(caught.value.__cause__)
