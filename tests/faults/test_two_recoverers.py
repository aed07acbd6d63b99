"""Several recoverers at once: the saga lease lets exactly one drive a saga at a time.

Two gateways racing to recover a dead gateway's sagas never apply an effect twice, and a
gateway frozen past its lease (a GC pause, SIGSTOP) cannot write once another took over.
Each test keeps its saga log apart, so only its own gateways can take its sagas over.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import time
from collections import Counter
from contextlib import closing

from sagas.records import SagaStatus
from tests.support.apart import Apart, saga_log_apart
from tests.support.api import claim, claim_all_tolerant, create
from tests.support.cli import coupon_saga
from tests.support.faulty_gateway import Fault
from tests.support.history import effects
from tests.support.invariants import assert_invariants
from tests.support.proxy import ProxyInThread
from tests.support.servers import gateway_process, gateway_processes, kill_9, process_group
from tests.support.settings import changed
from tests.support.waiting import (
    FAST_RECOVERY,
    all_ended,
    eventually,
    sagas_in_flight,
)

# Each answer from Redis comes this late to every gateway, as from a store far away. The
# dying gateway then has many sagas in flight at the kill (a fast local path ends them
# within a millisecond or two), and a recovery takes a few of these delays, so the other
# gateway's round (every 0.2 s) comes while the first is still working through them.
REDIS_DELAY_SECONDS = 0.06

# A is killed once this many of its sagas are in flight (each worker holds up to its pool's
# worth): enough for both recoverers to find some left when their rounds come.
KILLED_IN_FLIGHT = 10

# Many leases: the other gateway (looking every 0.2 s) has taken the saga over when A
# wakes, also on a busy machine.
STALL_SECONDS = 10.0


async def in_flight_at_least(apart: Apart, count: int) -> bool:
    return len(await sagas_in_flight(apart.saga_log)) >= count


async def owner_group(apart: Apart, saga_id: str) -> int | None:
    """Process group of the saga's last recoverer, None if that process is gone."""
    owner = await apart.redis.hget(apart.keys.saga(saga_id), "owner")
    assert owner, f"saga {saga_id} was never taken over"
    host, _, pid = owner.rpartition(":")
    assert host == socket.gethostname()
    try:
        return os.getpgid(int(pid))
    except ProcessLookupError:
        return None


async def test_two_gateways_recovering_at_once_never_drive_a_saga_twice(
    http, settings, pg, mongo, tmp_path, name
):
    """kill -9 of gateway A under 600 claims by 300 users for 100 units, with sagas in
    flight; B and C, up all along, race to recover them as their leases run out."""
    stock, users = 100, [f"user_{n}" for n in range(300)]
    attempts = [(user, name) for user in users * 2]
    random.Random(13).shuffle(attempts)
    far_redis = closing(ProxyInThread(settings.redis_url, delay=REDIS_DELAY_SECONDS))
    async with saga_log_apart(settings) as apart:
        with far_redis as proxied:
            far = {"redis_url": proxied.proxy.url_through(settings.redis_url)}
            fast = changed(apart.settings, FAST_RECOVERY | far)
            logs = [tmp_path / "b.log", tmp_path / "c.log"]
            with gateway_processes(fast, logs) as recovering:
                recoverers = [process_group(base) for base in recovering]
                # Each of A's workers freezes at its first claim document, with the sagas
                # beside it in flight: the sale cannot end before the kill, however fast.
                freezing = Fault.stall_after("record", STALL_SECONDS)
                with gateway_process(fast, tmp_path / "dying.log", fault=freezing) as base:
                    await create(http, base, name, stock)
                    burst = asyncio.ensure_future(claim_all_tolerant(http, base, attempts))
                    await eventually(lambda: in_flight_at_least(apart, KILLED_IN_FLIGHT))
                    kill_9(base)
                    killed = time.monotonic()
                    in_flight = len(await sagas_in_flight(apart.saga_log))
                    answered = await burst

                # The true end: every saga finished in the log, not merely none stuck.
                await eventually(lambda: all_ended(pg, apart.saga_log, name))
                ended_in = time.monotonic() - killed
                sagas = await apart.saga_log.find(None, 10_000)
                recovered = [s.saga_id for s in sagas if s.recoveries > 0]
                groups = Counter([await owner_group(apart, saga_id) for saga_id in recovered])
        ends = Counter(s.status.value for s in sagas if s.recoveries > 0)
        print(
            f"{in_flight} sagas in flight at the kill, all ended {ended_in:.1f}s after it; "
            f"taken over by B {groups[recoverers[0]]}, C {groups[recoverers[1]]}; "
            f"recovered to {dict(ends)}"
        )

        assert all(s.status.finished for s in sagas), {s.status for s in sagas}
        assert all(groups[group] > 0 for group in recoverers), groups
        for saga in sagas:
            counted = effects(await apart.saga_log.history(saga.saga_id))
            assert max(counted.values(), default=0) <= 1, (saga.saga_id, counted)
        facts = await assert_invariants(pg, mongo, name)
        winners = {body["user_id"] for status, body in answered if status == 200}
        assert winners <= set(facts.claims.values())
        code, out, _ = await coupon_saga(apart.settings, "audit", "--coupon", name)
        assert code == 0, out


async def claim_while_frozen(http, apart: Apart, tmp_path, coupon: str, step: str):
    """Claim through gateway A, which freezes right after `step`, with gateway B beside it.

    Returns A's answer, the saga's record and history once it ended, the process group of
    its last recoverer and B's, and A's log.
    """
    fast = changed(apart.settings, FAST_RECOVERY)
    freezing = Fault.stall_after(step, STALL_SECONDS)
    with (
        gateway_process(fast, tmp_path / "b.log", workers=1) as b,
        gateway_process(fast, tmp_path / "a.log", workers=1, fault=freezing) as a,
    ):
        await create(http, b, coupon, 2)
        status, body = await claim(http, a, "paused", coupon)
        saga_id = (await apart.saga_log.find(None, 10))[0].saga_id

        async def ended() -> bool:
            record = await apart.saga_log.load(saga_id)
            return record is not None and not record.status.in_flight

        await eventually(ended)
        record = await apart.saga_log.load(saga_id)
        taken_by = await owner_group(apart, saga_id)
        b_group = process_group(b)
    history = [(e.step, e.phase.value) for e in await apart.saga_log.history(saga_id)]
    return (status, body), record, history, (taken_by, b_group), (tmp_path / "a.log").read_text()


async def test_a_gateway_frozen_before_its_pivot_cannot_write_after_the_takeover(
    http, settings, pg, mongo, tmp_path, name
):
    """A freezes after reserve; B takes the saga over and gives the unit back; A, awake,
    is refused at the write it makes before its pivot and answers 503."""
    async with saga_log_apart(settings) as apart:
        answer, record, history, (taken_by, b_group), a_log = await claim_while_frozen(
            http, apart, tmp_path, name, "reserve"
        )
        assert (answer[0], answer[1]["error"]) == (503, "unavailable")
        assert record.status is SagaStatus.COMPENSATED and record.recoveries == 1
        assert taken_by == b_group
        # A wrote the intent; everything after is B's, which undid every step up to the
        # pivot (none had landed). A, awake, was refused at the write before its pivot.
        assert history == [
            ("reserve", "started"),
            ("record", "compensating"),
            ("record", "compensated"),
            ("reserve", "compensating"),
            ("reserve", "compensated"),
            ("reserve", "finished"),
        ]
        assert f"saga {record.saga_id} is driven by someone else now" in a_log
        hold = await pg.fetchval("SELECT status FROM holds WHERE saga_id = $1", record.saga_id)
        assert hold == "released"
        assert await mongo.claims.find_one({"saga_id": record.saga_id, "coupon_name": name}) is None
        facts = await assert_invariants(pg, mongo, name)
        assert facts.remaining_amount == 2
        code, out, _ = await coupon_saga(apart.settings, "audit", "--coupon", name)
        assert code == 0, out


async def test_a_gateway_frozen_after_its_pivot_leaves_one_claim_finished_by_another(
    http, settings, pg, mongo, tmp_path, name
):
    """A freezes after its claim document landed; B finds the pivot landed and finishes
    the saga forward; A, awake, is refused at its next write and tells the client its 200."""
    async with saga_log_apart(settings) as apart:
        answer, record, history, (taken_by, b_group), _ = await claim_while_frozen(
            http, apart, tmp_path, name, "record"
        )
        assert answer[0] == 200, answer
        assert record.status is SagaStatus.COMPLETED and record.recoveries == 1
        assert taken_by == b_group
        assert history == [
            ("reserve", "started"),
            ("record", "recovered"),
            ("confirm", "started"),
            ("confirm", "succeeded"),
            ("confirm", "finished"),
        ]
        facts = await assert_invariants(pg, mongo, name)
        assert facts.claims == {record.saga_id: "paused"}
        code, out, _ = await coupon_saga(apart.settings, "audit", "--coupon", name)
        assert code == 0, out
