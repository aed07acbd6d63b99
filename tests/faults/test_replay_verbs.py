"""The replay tool's verbs on real sagas left failed or stuck by real faults."""

from __future__ import annotations

import asyncio
import json
import socket

import aiohttp
import pytest

from orchestrator.bootstrap import build, open_stores
from sagas.ports import SagaLog
from sagas.records import SagaStatus
from tests.support.apart import Apart, saga_log_apart
from tests.support.api import claim, create
from tests.support.cli import coupon_saga
from tests.support.faulty_gateway import Fault
from tests.support.invariants import assert_invariants
from tests.support.proxy import through
from tests.support.servers import gateway_process, gateway_processes, kill_9
from tests.support.settings import changed
from tests.support.waiting import FAST_RECOVERY, eventually

# Gateways that look for stuck sagas only at their start: these gateways all start
# before the first claim, so nobody recovers a stuck saga before the operator does. The
# lease just outlasts the default retries (two default store timeouts, which the replay
# tool run with these settings keeps: it is slow to start on a busy machine).
STUCK_FAST = {
    "saga_lease_seconds": 11.0,
    "recovery_interval_seconds": 3600.0,
}
# Ample for a few commands run while a frozen driver's lease is live, on a busy machine.
LIVE_LEASE = 30.0


async def test_resume_finishes_a_saga_left_for_recovery_past_its_pivot(
    settings, service, pg, mongo, pg_proxy, name
):
    """PostgreSQL goes away right after the claim document is written: the claim stands,
    `confirm` cannot run, and the saga is left in flight for recovery (not parked: a
    store away needs no operator), its lease cut to a backoff. Once that runs out it is
    stuck, and `resume` finishes it as a recoverer would. (A saga log of its own: the
    session's gateways would recover it first.)"""
    async with saga_log_apart(settings) as apart:
        await left_for_recovery_then_resumed(apart, service, pg, mongo, pg_proxy, name)


async def left_for_recovery_then_resumed(
    apart: Apart, service, pg, mongo, pg_proxy, name: str
) -> None:
    settings = apart.settings
    cut_settings = changed(through(settings, database_url=pg_proxy), FAST_RECOVERY)
    loop = asyncio.get_running_loop()
    cutting: list[asyncio.Task[None]] = []

    def cut_after_record(step: str) -> None:
        if step == "record":  # the cut lands at the engine's next await
            cutting.append(loop.create_task(pg_proxy.cut()))

    async with open_stores(cut_settings) as stores:
        cut = build(cut_settings, stores, after_step=cut_after_record)
        await service.create(name, 3)
        claimed = await cut.coupons.claim("bob", name)  # past the pivot: a 200
        await cut.close()  # the saga, answered at its pivot, is left to recovery meanwhile
    await pg_proxy.restore()
    saga_id = claimed.saga_id

    code, out, _ = await coupon_saga(settings, "list", "--status", "failed", "--coupon", name)
    assert code == 0 and saga_id not in out  # nothing for an operator

    async def stuck() -> bool:
        return saga_id in await apart.saga_log.stuck(None)

    await eventually(stuck)
    code, out, _ = await coupon_saga(settings, "show", saga_id, "--json")
    shown = json.loads(out)
    assert (code, shown["status"], shown["done"]) == (0, "running", ["reserve", "record"])
    assert ("confirm", "deferred") in [(e["step"], e["phase"]) for e in shown["events"]]
    # reserve and record once each, confirm once and once more per retry (as many as fit
    # in SAGA_RETRY_SECONDS), by nobody else.
    confirm_tries = sum(
        e["tries"] for e in shown["events"] if e["step"] == "confirm" and e["phase"] != "started"
    )
    assert confirm_tries >= 2
    deferred_attempts = 2 + confirm_tries
    assert (shown["attempts"], shown["takeovers"], shown["lease"]["live"]) == (
        deferred_attempts,
        0,
        False,
    )

    code, _, err = await coupon_saga(settings, "compensate", saga_id)
    assert code == 1 and "past its pivot" in err

    code, out, _ = await coupon_saga(settings, "resume", saga_id, "--dry-run", "--json")
    assert (code, json.loads(out)["would"]) == (0, "drive forward: confirm")
    assert (await apart.saga_log.load(saga_id)).status is SagaStatus.RUNNING  # untouched

    code, out, _ = await coupon_saga(settings, "resume", saga_id, "--json")
    assert (code, json.loads(out)["status"]) == (0, "completed")
    shown = json.loads((await coupon_saga(settings, "show", saga_id, "--json"))[1])
    assert (shown["attempts"], shown["takeovers"], shown["epoch"]) == (deferred_attempts + 1, 1, 2)

    code, out, _ = await coupon_saga(settings, "resume", saga_id, "--json")
    assert (code, json.loads(out)["did"]) == (0, "nothing")  # idempotent
    facts = await assert_invariants(pg, mongo, name)
    assert list(facts.claims.values()) == ["bob"]
    assert (await coupon_saga(settings, "audit", "--coupon", name))[0] == 0


async def stuck_after_reserve(http, apart: Apart, tmp_path, name: str, users: list[str]) -> None:
    """Each user's claim dies with its gateway right after reserve; nobody recovers it.
    Returns once every one of them is stuck (its lease ran out)."""
    dying = changed(apart.settings, STUCK_FAST)
    logs = [tmp_path / f"{user}.log" for user in users]
    with gateway_processes(dying, logs, workers=1, fault=Fault.kill_after("reserve")) as bases:
        await create(http, bases[0], name, 5)
        for user, base in zip(users, bases, strict=True):
            with pytest.raises(aiohttp.ClientError):
                await claim(http, base, user, name)

    async def all_stuck() -> bool:
        return len(await apart.saga_log.stuck(100)) == len(users)

    await eventually(all_stuck)


async def test_compensate_and_recover_drive_stuck_sagas(http, settings, pg, mongo, tmp_path, name):
    async with saga_log_apart(settings) as apart:
        await compensate_and_recover(http, apart, pg, mongo, tmp_path, name)


async def compensate_and_recover(http, apart: Apart, pg, mongo, tmp_path, name: str) -> None:
    await stuck_after_reserve(http, apart, tmp_path, name, ["ann", "ben", "cid"])
    cli_settings = apart.settings

    code, out, _ = await coupon_saga(
        cli_settings, "list", "--status", "stuck", "--coupon", name, "--json"
    )
    stuck = {s["payload"]["user_id"]: s["saga_id"] for s in json.loads(out)}
    assert code == 1 and set(stuck) == {"ann", "ben", "cid"}
    assert (await coupon_saga(cli_settings, "audit", "--coupon", name))[0] == 0  # in flight

    code, out, _ = await coupon_saga(cli_settings, "compensate", stuck["ann"], "--dry-run")
    assert code == 0 and "would=compensate" in out
    code, out, _ = await coupon_saga(cli_settings, "compensate", stuck["ann"], "--json")
    assert (code, json.loads(out)["status"]) == (0, "compensated")

    code, out, _ = await coupon_saga(cli_settings, "recover", "--dry-run", "--json")
    planned = {r["saga_id"] for r in json.loads(out)}
    assert {stuck["ben"], stuck["cid"]} <= planned and stuck["ann"] not in planned
    code, out, _ = await coupon_saga(cli_settings, "recover", "--json")
    recovered = {r["saga_id"]: r for r in json.loads(out)}
    assert code == 0
    assert recovered[stuck["ben"]]["status"] == recovered[stuck["cid"]]["status"] == "compensated"
    assert {k: recovered[stuck["ben"]][k] for k in ("coupon", "user", "from")} == {
        "coupon": name,
        "user": "ben",
        "from": "running at reserve",
    }

    code, out, _ = await coupon_saga(cli_settings, "list", "--status", "stuck", "--coupon", name)
    assert code == 0
    facts = await assert_invariants(pg, mongo, name)
    assert (facts.remaining_amount, facts.claims) == (5, {})
    assert (await coupon_saga(cli_settings, "audit", "--coupon", name))[0] == 0


async def test_a_saga_under_a_live_lease_is_refused_with_when_its_lease_ends(
    http, settings, service, pg, mongo, tmp_path, name
):
    """Its gateway froze right after reserve: the saga is in flight under a live lease.
    The tool shows who holds it until when, and refuses (and predicts the refusal of) a
    takeover until the lease runs out; then `resume` undoes it."""
    await service.create(name, 5)
    async with saga_log_apart(settings) as apart:
        cli_settings = changed(apart.settings, {**STUCK_FAST, "saga_lease_seconds": LIVE_LEASE})
        saga_id = await refusals_under_a_live_lease(http, cli_settings, apart, tmp_path, name)

        async def lapsed() -> bool:
            found = await apart.saga_log.lease(saga_id)
            return found is not None and not found.live

        await eventually(lapsed)
        code, out, _ = await coupon_saga(cli_settings, "resume", saga_id, "--json")
        assert (code, json.loads(out)["status"]) == (0, "compensated")
        after = json.loads((await coupon_saga(cli_settings, "show", saga_id, "--json"))[1])
        assert (after["takeovers"], after["epoch"], after["lease"]) == (1, 2, None)
    facts = await assert_invariants(pg, mongo, name)
    assert (facts.remaining_amount, facts.claims) == (5, {})


async def refusals_under_a_live_lease(http, cli_settings, apart: Apart, tmp_path, name) -> str:
    """A gateway frozen after reserve; every verb refused while its lease is live. Returns
    the saga's id once the frozen gateway is dead."""
    freezing = Fault.stall_after("reserve", 600.0)
    log_path = tmp_path / "frozen.log"
    with gateway_process(cli_settings, log_path, workers=1, fault=freezing) as frozen:
        claiming = asyncio.create_task(claim(http, frozen, "held", name))
        saga_id = await running_saga_of(apart.saga_log, name)

        # At once: each is a process start, slow on a busy machine, and the lease must
        # still be live for the last of them.
        shown, dry_run, resumed, compensated = await asyncio.gather(
            coupon_saga(cli_settings, "show", saga_id, "--json"),
            coupon_saga(cli_settings, "resume", saga_id, "--dry-run"),
            coupon_saga(cli_settings, "resume", saga_id),
            coupon_saga(cli_settings, "compensate", saga_id, "--json"),
        )
        lease = json.loads(shown[1])["lease"]
        assert shown[0] == 0 and lease["live"], lease
        assert lease["owner"].startswith(f"{socket.gethostname()}:")
        ends = f"lease ends at {lease['expires_at']}"
        code, out, err = dry_run
        assert (code, out) == (1, "") and "would be refused" in err and ends in err, err
        code, out, err = resumed
        assert (code, out) == (1, "") and ends in err and lease["owner"] in err, err
        code, out, _ = compensated
        refused = json.loads(out)
        assert (code, refused["error"], refused["lease"]) == (1, "refused", lease)
        assert (await apart.saga_log.load(saga_id)).epoch == 1  # nobody took it over
        kill_9(frozen)
    claiming.cancel()
    return saga_id


async def running_saga_of(saga_log: SagaLog, coupon: str) -> str:
    """The id of the coupon's one running saga, once its intent is in the log."""
    found: list[str] = []

    async def started() -> bool:
        running = await saga_log.find(SagaStatus.RUNNING, 10_000)
        found[:] = [r.saga_id for r in running if r.payload["coupon_name"] == coupon]
        return bool(found)

    await eventually(started)
    (saga_id,) = found
    return saga_id
