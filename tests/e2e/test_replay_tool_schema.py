"""The schema is the service's: the replay tool against a database without it says so in
one line and creates nothing."""

from __future__ import annotations

import uuid

import asyncpg

from tests.support.cli import coupon_saga
from tests.support.settings import changed, on_database


async def test_the_replay_tool_names_a_missing_schema_and_makes_none(settings):
    database = f"empty_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(on_database(settings.database_url, "postgres"))
    await admin.execute(f'CREATE DATABASE "{database}"')
    try:
        empty = changed(settings, {"database_url": on_database(settings.database_url, database)})

        code, out, err = await coupon_saga(empty, "audit")

        assert (code, out) == (3, "")
        (line,) = err.splitlines()
        assert "postgresql" in line and "table coupons" in line
        assert "start coupon-service" in line
        nothing = await asyncpg.connect(empty.database_url)
        try:
            assert (
                await nothing.fetchval("SELECT count(*) FROM pg_class WHERE relname = 'coupons'")
                == 0
            )
        finally:
            await nothing.close()
    finally:
        await admin.execute(f'DROP DATABASE "{database}" WITH (FORCE)')
        await admin.close()
