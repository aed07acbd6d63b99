"""MongoDB stops answering (a server that is up and silent) in the middle of claims.

A claim whose claim document may have landed cannot be undone until MongoDB answers
again: its unit stays held, and its client must hear that the claim is in doubt, not
that nothing was taken; the same user's repeats hear the same, not `already_claimed`.
Claims after it are refused at the door (503, nothing taken) instead of each taking a
unit it cannot record. Once MongoDB answers, the doubt settles and claims go through.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.apart import Apart, saga_log_apart
from tests.support.api import claim, create
from tests.support.invariants import assert_invariants
from tests.support.proxy import CuttableProxy, through
from tests.support.servers import app_in_process
from tests.support.settings import changed
from tests.support.waiting import FAST_RECOVERY, all_ended, eventually

# Issue 21's short retries; the step timeout a second past the store's (the settings' rule).
SHORT = {**FAST_RECOVERY, "step_timeout_seconds": 2.0}


@pytest.fixture
async def apart(settings) -> AsyncIterator[Apart]:
    async with saga_log_apart(settings) as kept_apart:
        yield kept_apart


async def units_held(pg, coupon: str) -> int:
    return await pg.fetchval(
        "SELECT count(*) FROM holds WHERE coupon_name = $1 AND status = 'held'", coupon
    )


async def test_a_claim_in_doubt_says_so_and_so_do_its_repeats(
    http, apart: Apart, mongo_proxy: CuttableProxy, pg, mongo, name
):
    silent_mongo = changed(through(apart.settings, mongo_url=mongo_proxy), SHORT)
    async with app_in_process(silent_mongo) as base:
        await create(http, base, name, 3)
        await mongo_proxy.hang()

        status, body = await claim(http, base, "xena", name)
        assert (status, body["error"], body.get("outcome")) == (503, "unavailable", "in_doubt")
        assert await units_held(pg, name) == 1  # hers, until MongoDB says where it stands

        status, body = await claim(http, base, "xena", name)
        assert (status, body.get("outcome")) == (503, "in_doubt")  # not already_claimed

        # Anyone else is refused before taking anything: no unit of theirs is held.
        status, body = await claim(http, base, "yuri", name)
        assert (status, body["error"], body.get("outcome")) == (503, "unavailable", None)
        assert await units_held(pg, name) == 1

        await mongo_proxy.restore()

        async def xena_is_answered_for_sure() -> bool:
            status, body = await claim(http, base, "xena", name)
            return status == 200 or body.get("error") == "already_claimed"

        await eventually(xena_is_answered_for_sure)
        status, _ = await claim(http, base, "yuri", name)
        assert status == 200
        await eventually(lambda: all_ended(pg, apart.saga_log, name))
    facts = await assert_invariants(pg, mongo, name)
    assert sorted(facts.claims.values()) == ["xena", "yuri"]
