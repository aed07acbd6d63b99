"""A second gateway, its PostgreSQL behind a real PgBouncer in transaction pooling mode.

The tests collected in this folder are the e2e and contract tests themselves, imported,
run against this folder's `gateway`. The invariants are still read from PostgreSQL
directly (the session's `pg` pool), not through PgBouncer.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.pgbouncer import running_pgbouncer
from devstack.servers import Server
from devstack.stack import StackUrls
from orchestrator.claims.coupons import CouponService
from orchestrator.settings import Settings
from tests.support.servers import gateway_process
from tests.support.settings import changed


@pytest.fixture(scope="session")
def pgbouncer(stack: StackUrls) -> Iterator[Server]:
    with running_pgbouncer(stack.database_url) as server:
        yield server


@pytest.fixture(scope="session")
def pooled_settings(settings: Settings, pgbouncer: Server) -> Settings:
    return changed(settings, {"database_url": pgbouncer.url, "pg_pooler": "transaction"})


@pytest.fixture(scope="session")
def gateway(
    pooled_settings: Settings, service: CouponService, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A real `coupon-service` with two workers, every PostgreSQL call through PgBouncer."""
    log_path: Path = tmp_path_factory.mktemp("gateway-pgbouncer") / "gateway.log"
    with gateway_process(pooled_settings, log_path) as base_url:
        yield base_url
