"""kill -9 of the gateway right after each saga step; a restarted gateway recovers the saga."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from sagas.records import SagaStatus
from tests.support.api import claim, create, details
from tests.support.invariants import assert_invariants
from tests.support.servers import gateway_process

FAST_RECOVERY = {"saga_lease_seconds": 1.0, "recovery_interval_seconds": 0.2}


async def finished_saga(pg, service, coupon: str, user: str):
    """Wait, within a generous bound, for the user's saga to reach a final status."""
    for _ in range(300):
        saga_id = await pg.fetchval(
            "SELECT saga_id::text FROM holds WHERE coupon_name = $1 AND user_id = $2", coupon, user
        )
        record = saga_id and await service.saga_log.load(saga_id)
        if record and not record.status.in_flight:
            return record
        await asyncio.sleep(0.1)
    raise AssertionError(f"the saga of {user} on {coupon} was not recovered")


@pytest.mark.parametrize(
    ("step", "outcome", "claimed_by"),
    [
        ("reserve", SagaStatus.COMPENSATED, []),
        ("record", SagaStatus.COMPLETED, ["victim"]),
        ("confirm", SagaStatus.COMPLETED, ["victim"]),
    ],
)
async def test_a_saga_cut_by_kill_9_ends_on_restart(
    http, settings, service, pg, mongo, tmp_path, name, step, outcome, claimed_by
):
    dying = settings.model_copy(update={**FAST_RECOVERY, "fault_kill_after": step})
    with gateway_process(dying, tmp_path / "dying.log", workers=1) as base:
        await create(http, base, name, 2)
        with pytest.raises(aiohttp.ClientError):
            await claim(http, base, "victim", name)

    restarted = settings.model_copy(update=FAST_RECOVERY)
    with gateway_process(restarted, tmp_path / "restarted.log", workers=1) as base:
        record = await finished_saga(pg, service, name, "victim")
        assert record.status is outcome, record.error
        assert record.recoveries >= 1
        coupon = await details(http, base, name)
    assert coupon["claimed_by"] == claimed_by
    assert coupon["remaining_amount"] + len(claimed_by) == 2
    await assert_invariants(pg, mongo, name)
