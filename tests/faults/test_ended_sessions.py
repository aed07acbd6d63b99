"""PostgreSQL ending the pool's sessions while they sit idle: pg_terminate_backend (as in
docs/REPLAY.md's failed-saga walkthrough), a fast shutdown, idle_session_timeout.

The server sends a FATAL error, then closes the connection; the client reads the two
apart (on loopback, in consecutive turns of its event loop; across a network, as far
apart as the close is slow). A statement that starts in between meets a connection whose
session is over but which its pool still counts as open. It must run on a live
connection instead: the session it was handed had ended before anything was sent.
"""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from orchestrator.bootstrap import postgres_pool
from services.batched import BatchedInventory
from services.inventory import PostgresInventory
from tests.support.proxy import CuttableProxy, through
from tests.support.settings import changed
from tests.support.waiting import eventually

POOL_SIZE = 2


@pytest.mark.parametrize("adapter", [PostgresInventory, BatchedInventory])
async def test_a_claim_after_the_server_ended_idle_sessions_runs_on_a_live_connection(
    settings, pg: asyncpg.Pool, pg_proxy: CuttableProxy, name, adapter
):
    application = f"ended_{uuid.uuid4().hex[:12]}"  # picks out this pool's sessions
    through_proxy = through(settings, database_url=pg_proxy)
    ours = changed(
        through_proxy,
        {
            "pg_pool_size": POOL_SIZE,
            "database_url": f"{through_proxy.database_url}?application_name={application}",
        },
    )
    saga_id = str(uuid.uuid4())
    async with postgres_pool(ours) as pool:
        inventory = adapter(pool)
        await inventory.warm_up()  # the claim's statements prepared, as in a gateway
        await inventory.create_coupon(name, 3)

        try:
            await pg_proxy.hold_closes()
            ended = await pg.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = $1",
                application,
            )
            assert ended == POOL_SIZE

            async def every_session_said_goodbye() -> bool:
                return pg_proxy.closes_held == POOL_SIZE

            await eventually(every_session_said_goodbye)
            # The FATAL errors are in our sockets by now; a round trip elsewhere gives the
            # event loop the turn in which asyncpg reads them.
            await pg.fetchval("SELECT 1")

            await inventory.reserve(saga_id, name, "bob")
            await inventory.confirm(saga_id)
        finally:
            await pg_proxy.restore()  # the pool's goodbye must not wait on a held close

    status = await pg.fetchval("SELECT status FROM holds WHERE saga_id = $1::uuid", saga_id)
    assert status == "confirmed"
