"""A sale through HAProxy onto three gateway hosts, one fault on one host during it,
every claim recorded and the history checked against the stores once sagas end.

The sale runs at concurrency 100; the claims past the first part wait for the heal, so
every fault has claims before, during and after it. Each test prints its row of the
nemesis table: requests, violations, the fault's window and availability.
"""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest

from devstack.cluster.cluster import Cluster
from devstack.cluster.gateway_host import GatewayHost
from orchestrator.settings import Settings
from services.saga_log import RedisSagaLog
from tests.cluster.conftest import SagaLogView
from tests.cluster.nemesis import FAULTS, Fault
from tests.support.api import create, details
from tests.support.checker import availability, check
from tests.support.history import effects
from tests.support.op_history import History, Window, run_sale
from tests.support.sale import claimants
from tests.support.waiting import all_ended, eventually

# The claims before the heal go as fast as 100 at a time are answered (RATE is only a
# cap), so each gateway has sagas in flight whenever a fault begins.
USERS, STOCK, CONCURRENCY, RATE = 900, 600, 100, 2000
HELD_BACK = 300  # claims sent once the fault is healed
FAULT_AT = 150  # answers before the fault begins
MAX_TRIES = 5


async def _taken_out_and_settled(
    cluster: Cluster, victim: str, saga_log: SagaLogView, driven: set[str]
) -> None:
    """Until HAProxy sends the victim nothing and the sagas it drove (`driven`, which it
    cannot drive on) have all ended."""

    async def done() -> bool:
        if victim in cluster.in_rotation():
            return False
        return not driven & await saga_log.in_flight()

    await eventually(done)


async def _begin(
    fault: Fault, cluster: Cluster, victim: GatewayHost, settings: Settings, saga_log: SagaLogView
) -> set[str]:
    """Begin the fault. One that takes sagas over is begun while the victim has sagas in
    flight; it returns them. (A host cut from one store goes on driving its own sagas,
    retrying, as long as it holds their leases.)"""
    if not fault.takes_over:
        fault.begin(cluster, victim, settings)
        return set()
    for _ in range(MAX_TRIES):
        pids = victim.net.pids()

        async def driving(pids: set[int] = pids) -> bool:
            return bool(await saga_log.in_flight_driven_by(pids))

        # Begun only while the victim drives some (the claims before the heal are soon all
        # answered), and held still while looked at: a saga seen in flight is still in
        # flight when the fault begins, however fast sagas end.
        await eventually(driving)
        victim.pause()
        driven = await saga_log.in_flight_driven_by(pids)
        if driven:
            fault.begin(cluster, victim, settings)
        if not (driven and fault.pauses):
            victim.resume()
        if driven:
            return driven
    raise AssertionError(f"{fault.name}: never caught {victim.name} with a saga in flight")


@pytest.mark.parametrize("fault", FAULTS, ids=[fault.name for fault in FAULTS])
async def test_a_sale_through_one_fault_breaks_no_promise(
    http,
    cluster: Cluster,
    cluster_settings: Settings,
    saga_log: SagaLogView,
    pg: asyncpg.Pool,
    mongo,
    name: str,
    fault: Fault,
) -> None:
    await create(http, cluster.lb_url, name, STOCK)
    history, healed = History(), asyncio.Event()
    selling = asyncio.ensure_future(
        run_sale(
            http,
            cluster.lb_url,
            name,
            claimants(USERS),
            history,
            concurrency=CONCURRENCY,
            per_second=RATE,
            held_back=HELD_BACK,
            healed=healed,
        )
    )
    await eventually(lambda: _answered(history, FAULT_AT))
    victim = cluster.gateways[0]
    began = time.monotonic()
    driven = await _begin(fault, cluster, victim, cluster_settings, saga_log)
    await _taken_out_and_settled(cluster, victim.name, saga_log, driven)
    if fault.takes_over:
        records = [await saga_log.log.load(saga_id) for saga_id in driven]
        assert all(r is not None and r.recoveries > 0 for r in records), records
    fault.heal(victim)
    await asyncio.to_thread(victim.wait_healthy)
    await asyncio.to_thread(cluster.wait_in_rotation, victim)
    history.windows.append(Window(fault.name, began, time.monotonic()))
    healed.set()
    await selling

    await eventually(lambda: all_ended(pg, saga_log.log, name), tries=2400)
    claimed_by = (await details(http, cluster.lb_url, name))["claimed_by"]
    found = await check(pg, mongo, cluster_settings, name, history, claimed_by)
    found += await _effects_twice(saga_log.log, name)
    rows = availability(history)
    window = history.windows[0]
    taken_over = f"{len(driven)} of its sagas taken over, " if fault.takes_over else ""
    print(
        f"{fault.name}: {len(history.ops)} requests, {len(found)} violations, {taken_over}"
        f"window {window.healed - window.began:.1f}s; " + "; ".join(map(str, rows))
    )
    assert found == []
    assert rows[-1].share >= fault.outside_availability, rows[-1]


async def _answered(history: History, count: int) -> bool:
    return len(history.ops) >= count


async def _effects_twice(saga_log: RedisSagaLog, coupon: str) -> list[str]:
    """The coupon's sagas some effect of which was made twice: a driver that lost its saga
    and went on."""
    found = []
    for record in await saga_log.find(None, None):
        if record.payload.get("coupon_name") != coupon:
            continue
        counted = effects(await saga_log.history(record.saga_id))
        if max(counted.values(), default=0) > 1:
            found.append(f"saga {record.saga_id} did an effect twice: {dict(counted)}")
    return found
