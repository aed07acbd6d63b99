"""Two gateways on the same stores, one of them killed with SIGKILL in the middle of a sale.

The clients' claims go to both, in turn, until A dies; then to B alone, as a load balancer
would send them. B goes on selling, and takes over each saga A left in flight once its
lease runs out, driving each once: one takeover, one epoch bump, each effect at most once,
ending completed or compensated. Every answer is then read against the stores.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import socket
from collections import Counter

from sagas.records import Phase, SagaStatus
from tests.faults.test_adversarial_sales import owners
from tests.faults.test_kill import assert_each_recovery_logged_once_under_its_saga
from tests.support.apart import Apart, saga_log_apart
from tests.support.api import create, details
from tests.support.cli import coupon_saga
from tests.support.history import effects
from tests.support.invariants import assert_invariants, assert_written_once
from tests.support.processes import descendants
from tests.support.sale import CUT, Sale, claimants, judge, outcomes
from tests.support.servers import gateway_processes, kill_9, process_group
from tests.support.settings import changed
from tests.support.waiting import FAST_RECOVERY, all_ended, eventually, sagas_in_flight

STOCK, USERS, REPEATS, CONCURRENCY = 800, 2400, 600, 64
# Well before the stock runs out: half the sale, and its sell-out, happen at B alone.
KILL_AFTER_ANSWERS = 400
TIMINGS = {**FAST_RECOVERY, "step_timeout_seconds": 2.0, "recovery_interval_seconds": 0.5}


def gateway_pids(base: str) -> set[int]:
    """The gateway's main process and its workers: the owners of the sagas it drives."""
    group = process_group(base)
    return {group, *descendants(group)}


async def driver(apart: Apart, saga_id: str) -> int:
    """The pid of the process that drives (or last drove) the saga."""
    owner = await apart.redis.hget(apart.keys.saga(saga_id), "owner")
    host, _, pid = (owner or "").rpartition(":")
    assert host == socket.gethostname(), owner
    return int(pid)


async def in_flight_driven_by(apart: Apart, pids: set[int]) -> set[str]:
    return {s for s in await sagas_in_flight(apart.saga_log) if await driver(apart, s) in pids}


async def stopped_while_driving(apart: Apart, pids: set[int]) -> set[str]:
    """SIGSTOP the gateway's processes at a moment they drive sagas; those sagas. (Sagas
    end within milliseconds: ones seen in flight by a running gateway may have ended when
    a kill lands, ones seen by a stopped gateway have not.) Read from the in-flight index
    alone: reading every record of the sale at each poll is too slow to catch one."""
    caught: set[str] = set()

    def signal_all(sent: signal.Signals) -> None:
        for pid in pids:
            os.kill(pid, sent)

    async def driven() -> set[str]:
        return {saga for saga, owner in (await owners(apart)).items() if owner in pids}

    async def stopped_with_some() -> bool:
        if not await driven():
            return False
        signal_all(signal.SIGSTOP)
        caught.update(await driven())
        if not caught:
            signal_all(signal.SIGCONT)
        return bool(caught)

    await eventually(stopped_with_some)
    return caught


async def test_the_survivor_drives_each_saga_of_a_killed_gateway_once(
    http, settings, pg, mongo, tmp_path, name
):
    async with saga_log_apart(settings) as apart:
        fast = changed(apart.settings, TIMINGS)
        logs = [tmp_path / "a.log", tmp_path / "b.log"]
        with gateway_processes(fast, logs) as (a, b):
            await create(http, b, name, STOCK)
            live, turn = [a, b], itertools.count()
            sale = Sale(
                http,
                name,
                claimants(USERS, REPEATS, seed=21),
                CONCURRENCY,
                lambda: live[next(turn) % len(live)],
            )
            selling = asyncio.ensure_future(sale.run())
            await eventually(sale.answered(KILL_AFTER_ANSWERS))
            left_by_a = await stopped_while_driving(apart, gateway_pids(a))
            kill_9(a)
            live.remove(a)
            answers = await selling

            await eventually(lambda: all_ended(pg, apart.saga_log, name))
            b_pids = gateway_pids(b)
            claimed_by = (await details(http, b, name))["claimed_by"]
            sagas = {s.saga_id: s for s in await apart.saga_log.find(None, 10_000)}
            recovered = {s for s, record in sagas.items() if record.recoveries}
            drivers = {s: await driver(apart, s) for s in recovered}

        facts = await assert_invariants(pg, mongo, name)
        verdict = judge(answers, facts, claimed_by)
        ends = Counter(sagas[s].status.value for s in left_by_a)
        print(
            f"answers {dict(outcomes(answers))}; {len(left_by_a)} sagas left in flight by A, "
            f"ended {dict(ends)}; {len(recovered)} taken over; false answers "
            f"{verdict.false_answers}; {len(facts.claims)} claims, {facts.remaining_amount} left"
        )
        assert verdict.false_answers == []
        assert {x.gateway for x in answers if x.status == CUT} <= {a}
        assert all(record.status.finished for record in sagas.values())

        # Nothing driven twice: each saga A left was taken over once, by B, and each of its
        # effects on a store happened at most once.
        assert left_by_a, "the kill found no saga in flight"
        assert left_by_a <= recovered
        for saga_id in recovered:
            record = sagas[saga_id]
            assert record.status in (SagaStatus.COMPLETED, SagaStatus.COMPENSATED), record
            assert (record.recoveries, record.epoch) == (1, 2), record
            assert drivers[saga_id] in b_pids, (saga_id, drivers[saga_id])
            history = await apart.saga_log.history(saga_id)
            assert max(effects(history).values(), default=0) <= 1, (saga_id, history)
            assert sum(event.phase is Phase.RECOVERED for event in history) <= 1, history
        assert_each_recovery_logged_once_under_its_saga(logs[1])
        await assert_written_once(pg, mongo, name)
        code, out, _ = await coupon_saga(apart.settings, "audit", "--coupon", name)
        assert code == 0, out
