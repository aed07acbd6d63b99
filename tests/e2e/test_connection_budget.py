"""The connection budget against a PostgreSQL as the stock image runs it (max_connections
100): sixteen workers start whole inside the default budget and pass the contract and
the concurrency tests; a budget or a database that cannot work refuses to start with
one line, before any worker exists."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from devstack.servers import start_postgres
from orchestrator.process.budget import worker_share
from orchestrator.settings import Settings
from tests.e2e import test_concurrency as concurrency
from tests.e2e import test_contract as contract
from tests.support.servers import gateway_process, process_group, run_to_exit
from tests.support.settings import changed
from tests.support.waiting import eventually

WORKERS = 16
OBSERVER = "budget-test-observer"  # our own connections, left out of the gateway's count
GATEWAY_CONNECTIONS = f"""
SELECT count(*) FROM pg_stat_activity
WHERE backend_type = 'client backend' AND application_name <> '{OBSERVER}'
"""


@pytest.fixture(scope="module")
def stock_postgres() -> Iterator[str]:
    """A PostgreSQL of its own with the stock images' max_connections; its server URL."""
    root = Path(tempfile.mkdtemp(prefix="coupon-budget-"))
    root.chmod(0o755)  # the postgres user must reach its data dir inside
    server = start_postgres(root, databases=("coupons",), max_connections=100)
    try:
        yield server.url
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def budget_settings(settings: Settings, stock_postgres: str) -> Settings:
    return changed(settings, {"database_url": f"{stock_postgres}/coupons"})


@pytest.fixture(scope="module")
async def pg(budget_settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    """Our own look at the stock PostgreSQL (the invariants read it), not counted."""
    pool = await asyncpg.create_pool(
        budget_settings.database_url,
        min_size=1,
        max_size=2,
        server_settings={"application_name": OBSERVER},
    )
    yield pool
    await pool.close()


@pytest.fixture(scope="module")
async def most_gateway_connections(pg: asyncpg.Pool) -> AsyncIterator[list[int]]:
    """The most PostgreSQL connections the gateway held at once, sampled all along."""
    most = [0]

    async def sample() -> None:
        while True:
            most[0] = max(most[0], await pg.fetchval(GATEWAY_CONNECTIONS))
            await asyncio.sleep(0.02)

    task = asyncio.ensure_future(sample())
    yield most
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@pytest.fixture(scope="module")
async def gateway(
    budget_settings: Settings,
    pg: asyncpg.Pool,
    most_gateway_connections: list[int],
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[str]:
    """Sixteen workers with the default budget, once every one of them is up."""
    log_path = tmp_path_factory.mktemp("budget") / "gateway.log"
    whole = WORKERS * worker_share(budget_settings, WORKERS).pg_pool
    with gateway_process(budget_settings, log_path, workers=WORKERS) as base_url:
        # Each worker opens its pool in full before it listens: all up, all counted.
        await eventually(lambda: _gateway_holds(pg, whole), tries=6000)
        yield base_url
        assert len(_children(process_group(base_url))) == WORKERS  # none died meanwhile


async def _gateway_holds(pg: asyncpg.Pool, connections: int) -> bool:
    return bool(await pg.fetchval(GATEWAY_CONNECTIONS) == connections)


def _children(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()


# The same tests as against the two-worker gateway, here against sixteen workers on the
# stock PostgreSQL (they take `gateway` and `pg` from this module).
test_create_returns_the_coupon_with_its_location = (
    contract.test_create_returns_the_coupon_with_its_location
)
test_duplicate_name_is_409_coupon_exists = contract.test_duplicate_name_is_409_coupon_exists
test_claim_returns_the_claim_and_its_saga_id = contract.test_claim_returns_the_claim_and_its_saga_id
test_claim_errors = contract.test_claim_errors
test_claimed_by_lists_oldest_claim_first = contract.test_claimed_by_lists_oldest_claim_first
test_unknown_coupon_is_404 = contract.test_unknown_coupon_is_404
test_flash_sale_has_exactly_stock_winners = concurrency.test_flash_sale_has_exactly_stock_winners
test_double_dip_gives_one_claim = concurrency.test_double_dip_gives_one_claim
test_duplicates_never_crowd_out_other_users = (
    concurrency.test_duplicates_never_crowd_out_other_users
)


async def test_sixteen_workers_stay_inside_the_default_budget(
    gateway, budget_settings, most_gateway_connections
):
    """After the sales above: never more PostgreSQL connections than PG_MAX_CONNECTIONS."""
    assert budget_settings.pg_max_connections == Settings(_env_file=None).pg_max_connections
    assert 0 < most_gateway_connections[0] <= budget_settings.pg_max_connections


def _errors(lines: list[str]) -> list[str]:
    """The messages of the error lines; a line that is not one of our JSON lines counts."""
    found = []
    for line in lines:
        try:
            logged = json.loads(line)
        except ValueError:
            found.append(line)
            continue
        if logged["level"] in ("error", "critical"):
            found.append(logged["message"])
    return found


async def test_a_budget_that_cannot_fit_refuses_to_start(budget_settings):
    too_big = changed(budget_settings, {"pg_max_connections": 500})

    code, lines = await run_to_exit(too_big, workers=2)

    assert code != 0
    (refusal,) = _errors(lines)
    assert "PG_MAX_CONNECTIONS=500" in refusal and "max_connections=100" in refusal
    assert not any("Traceback" in line or "listening" in line for line in lines)


@pytest.mark.parametrize(
    ("wrong", "said"),
    [
        ("{server}/missing_{tag}", 'database "missing_{tag}" does not exist'),
        ("postgresql://nobody_{tag}@{host}/coupons", 'role "nobody_{tag}" does not exist'),
    ],
)
async def test_a_wrong_database_or_role_is_one_line(budget_settings, stock_postgres, wrong, said):
    tag = uuid.uuid4().hex[:8]
    url = wrong.format(server=stock_postgres, host=stock_postgres.rpartition("@")[2], tag=tag)

    code, lines = await run_to_exit(changed(budget_settings, {"database_url": url}), workers=2)

    assert code != 0
    (refusal,) = _errors(lines)
    assert said.format(tag=tag) in refusal and "DATABASE_URL" in refusal
    assert not any("Traceback" in line for line in lines)


async def test_a_worker_that_dies_stops_the_service_with_one_line(settings, tmp_path):
    """A worker killed (as the OOM killer would): the service stops its other workers,
    says so once, naming the worker, and exits non-zero; no worker is left running."""
    log_path = tmp_path / "gateway.log"
    with gateway_process(settings, log_path) as base:
        main = process_group(base)
        victim, *others = _children(main)
        os.kill(int(victim), signal.SIGKILL)

        async def stopped() -> bool:
            return not _running(main)

        await eventually(stopped)
    lines = log_path.read_text().splitlines()
    (stopping,) = _errors(lines)
    assert "killed by signal 9" in stopping and "stopping" in stopping
    assert not any("Traceback" in line for line in lines)
    assert not any(_running(int(pid)) for pid in others)


def _running(pid: int) -> bool:
    """Neither gone nor exited and waiting to be reaped (state Z)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"
