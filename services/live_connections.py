"""A pool's connections, each call run on one whose session the server has not ended.

PostgreSQL ends a session (pg_terminate_backend, a fast shutdown, idle_session_timeout)
by sending a FATAL error and then closing the socket, and asyncpg reads the two apart:
in consecutive turns of the event loop on loopback, further apart when the close is
slow on its way. An error that arrives on an idle connection leaves its protocol waiting
for a ReadyForQuery that never comes (ERROR_CONSUME, state 2), while the pool still
counts the connection as open until it reads the close. The next statement on it is
refused before a byte is written (InternalClientError "cannot switch to state N; another
operation (2) is in progress"), and asyncpg aborts the connection.

Nothing was sent, and the session, with any transaction it had open, had already ended:
the call is run again, whole, on another connection.

A connection to a node that takes no writes now (a primary fenced read-only in a
failover, or a standby that a stale address reached) answers, and refuses every write
for as long as it lives. The first refusal has the pool make all its connections again,
so a multi-host DATABASE_URL (target_session_attrs=read-write) finds the primary it has
now; the call itself fails (a 503 that took nothing) and its saga retries it.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

Answer = TypeVar("Answer")

_SESSION_ENDED = re.compile(r"cannot switch to state \d+; another operation \(2\) is in progress")


def session_ended_by_server(error: BaseException) -> bool:
    """asyncpg refusing a statement on a connection whose server said goodbye. State 2
    with no operation in flight (one in flight is refused earlier, with InterfaceError)
    comes only from an error read while the connection sat idle."""
    return isinstance(error, asyncpg.InternalClientError) and bool(
        _SESSION_ENDED.fullmatch(str(error))
    )


class LiveConnections:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def run(self, call: Callable[[asyncpg.Connection], Awaitable[Answer]]) -> Answer:
        """`call` on a pooled connection; again on another if the server had ended that
        one's session before it started. Each such refusal aborts one dead connection,
        so after as many as the pool holds it has opened new ones; a refusal on the last
        try (the server ending sessions as fast as we open them) is raised."""
        for _ in range(self.pool.get_max_size()):
            try:
                return await self._on_the_primary(call)
            except asyncpg.InternalClientError as error:
                if not session_ended_by_server(error):
                    raise
        return await self._on_the_primary(call)

    async def _on_the_primary(
        self, call: Callable[[asyncpg.Connection], Awaitable[Answer]]
    ) -> Answer:
        try:
            async with self.pool.acquire() as connection:
                return await call(connection)
        except asyncpg.ReadOnlySQLTransactionError:
            await self.pool.expire_connections()
            raise

    async def fetch(self, query: str, *args: Any) -> list[Any]:
        return await self.run(lambda connection: connection.fetch(query, *args))

    async def fetchrow(self, query: str, *args: Any) -> Any:
        return await self.run(lambda connection: connection.fetchrow(query, *args))

    async def fetchval(self, query: str, *args: Any) -> Any:
        return await self.run(lambda connection: connection.fetchval(query, *args))
