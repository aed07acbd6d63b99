"""Before any worker starts: every store answers and is set up for us, and PostgreSQL
has room for the budget.

Run once in the main process, so a start that cannot work stops there with one line
naming what to change, instead of as many half-started workers as there are CPUs.
"""

from __future__ import annotations

import asyncpg

from orchestrator.bootstrap import open_stores
from orchestrator.settings import Settings
from sagas.errors import StoreNotSetUp
from services.failures import unavailable_on_failure

# Connections PostgreSQL would still accept from an ordinary role. Superusers' reserve
# (and PG 16's reserved_connections) is not ours to take; our own check does not count.
# Asked of the server the pool connected to: with several hosts in DATABASE_URL, the
# primary (target_session_attrs=read-write), where every connection of the budget goes.
_ROOM = """
SELECT current_setting('max_connections')::int AS allowed,
       current_setting('superuser_reserved_connections')::int
         + coalesce(current_setting('reserved_connections', true)::int, 0) AS reserved,
       (SELECT count(*) FROM pg_stat_activity
        WHERE backend_type = 'client backend' AND pid <> pg_backend_pid())::int AS in_use,
       coalesce(host(inet_server_addr()) || ':' || inet_server_port(),
                'the server on its socket') AS server
"""


async def check_room(pool: asyncpg.Pool, budget: int) -> None:
    with unavailable_on_failure("postgresql"):
        row = await pool.fetchrow(_ROOM)
    room = row["allowed"] - row["reserved"] - row["in_use"]
    if budget > room:
        raise StoreNotSetUp(
            "postgresql",
            f"PG_MAX_CONNECTIONS={budget} does not fit {row['server']}: "
            f"max_connections={row['allowed']}, "
            f"{row['reserved']} reserved and {row['in_use']} in use leave {room}; "
            f"set PG_MAX_CONNECTIONS to at most {room} or raise the server's max_connections",
        )


async def check_stores(settings: Settings) -> None:
    """Wait for each store as a worker would (STARTUP_WAIT_SECONDS), apply what is missing
    of the schema once for all workers, and check the budget fits what PostgreSQL allows."""
    one_each = {"pg_pool_size": 1, "mongo_pool_size": 1, "redis_pool_size": 1}
    async with open_stores(settings.model_copy(update=one_each)) as stores:
        if settings.pg_pooler == "none":
            # Behind a pooler our connections are its clients (its max_client_conn bounds
            # them), not backends of the server this query would measure.
            await check_room(stores.pg_pool, settings.pg_max_connections)
