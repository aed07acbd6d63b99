"""A store that answers but refuses us mid-sale (a role's privileges revoked, a password
changed): a claim is a 503 that took nothing, never a 500, and the log says what to do."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from tests.support.apart import saga_log_apart
from tests.support.api import claim, create
from tests.support.invariants import assert_conserved
from tests.support.servers import app_in_process
from tests.support.settings import changed


@pytest.fixture
async def role(pg: asyncpg.Pool) -> AsyncIterator[str]:
    """A login role of its own with just what the gateway needs on the stock's tables."""
    name = f"claimer_{uuid.uuid4().hex[:12]}"
    await pg.execute(f"CREATE ROLE {name} LOGIN")
    await pg.execute(f"GRANT USAGE ON SCHEMA public TO {name}")
    await pg.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON coupons, holds TO {name}")
    yield name
    await pg.execute(f"DROP OWNED BY {name}")
    await pg.execute(f"DROP ROLE {name}")


def as_role(database_url: str, role: str) -> str:
    parts = urlsplit(database_url)
    return urlunsplit(parts._replace(netloc=f"{role}@{parts.hostname}:{parts.port}"))


async def test_a_claim_refused_by_postgresql_privileges_is_a_503_that_took_nothing(
    http, settings, pg, mongo, role, name, caplog
):
    async with saga_log_apart(settings) as apart:
        refused = changed(apart.settings, {"database_url": as_role(settings.database_url, role)})
        async with app_in_process(refused) as base:
            await create(http, base, name, 3)
            await pg.execute(f"REVOKE UPDATE ON coupons FROM {role}")  # an operator's slip

            with caplog.at_level(logging.WARNING):
                status, body = await claim(http, base, "alice", name)

    assert (status, body["error"]) == (503, "unavailable")
    assert "permission denied" not in body["message"]  # the driver's words stay in the log
    assert any("permission denied" in r.getMessage() for r in caplog.records), caplog.text
    assert await pg.fetchval("SELECT remaining_amount FROM coupons WHERE name = $1", name) == 3
    assert await pg.fetchval("SELECT count(*) FROM holds WHERE coupon_name = $1", name) == 0
    assert await mongo.claims.count_documents({"coupon_name": name}) == 0
    await assert_conserved(pg, name)
