"""Flash-sale and double-dip attacks, fired at once, then checked against the stores."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tests.support.api import claim, claim_all, create, details, metric, outcomes
from tests.support.invariants import assert_invariants
from tests.support.servers import gateway_process
from tests.support.settings import changed


@pytest.fixture(scope="module", params=[True, False], ids=["batched", "one-call-at-a-time"])
def gateway(request, gateway, settings, tmp_path_factory) -> Iterator[str]:
    """Each attack on the session's gateway (stores batched, the default), then on one
    that sends each saga's store calls by themselves (STORE_BATCHING=false)."""
    if request.param:
        yield gateway
        return
    alone = changed(settings, {"store_batching": False})
    with gateway_process(alone, tmp_path_factory.mktemp("unbatched") / "gateway.log") as base:
        yield base


@pytest.mark.parametrize(("claims", "stock"), [(50, 5), (1000, 100)])
async def test_flash_sale_has_exactly_stock_winners(http, gateway, pg, mongo, name, claims, stock):
    await create(http, gateway, name, stock)
    users = [f"user_{n}" for n in range(claims)]

    results = await claim_all(http, gateway, [(user, name) for user in users])

    assert outcomes(results) == {"claimed": stock, "out_of_stock": claims - stock}
    winners = [body["user_id"] for status, body in results if status == 200]
    coupon = await details(http, gateway, name)
    assert coupon["remaining_amount"] == 0
    assert sorted(coupon["claimed_by"]) == sorted(winners)
    facts = await assert_invariants(pg, mongo, name)
    assert sorted(facts.claims.values()) == sorted(winners)


async def test_double_dip_gives_one_claim(http, gateway, pg, mongo, name):
    await create(http, gateway, name, 5)

    results = await claim_all(http, gateway, [("dipper", name)] * 10)

    assert outcomes(results) == {"claimed": 1, "already_claimed": 9}
    coupon = await details(http, gateway, name)
    assert (coupon["remaining_amount"], coupon["claimed_by"]) == (4, ["dipper"])
    await assert_invariants(pg, mongo, name)


async def test_double_dip_on_the_last_unit_is_already_claimed(http, gateway, pg, mongo, name):
    await create(http, gateway, name, 1)

    results = await claim_all(http, gateway, [("dipper", name)] * 10)

    assert outcomes(results) == {"claimed": 1, "already_claimed": 9}
    await assert_invariants(pg, mongo, name)


async def test_duplicates_never_crowd_out_other_users(http, gateway, pg, mongo, name):
    """Invariant 5: a user's 40 duplicates never take stock that 4 others are owed."""
    await create(http, gateway, name, 5)
    attempts = [("greedy", name)] * 40 + [(f"fair_{n}", name) for n in range(4)]

    results = await claim_all(http, gateway, attempts)

    fair = [
        status
        for (user, _), (status, _) in zip(attempts, results, strict=True)
        if user.startswith("fair")
    ]
    assert fair == [200] * 4
    assert outcomes(results) == {"claimed": 5, "already_claimed": 39}
    coupon = await details(http, gateway, name)
    assert coupon["remaining_amount"] == 0
    assert sorted(coupon["claimed_by"]) == sorted(
        ["greedy", "fair_0", "fair_1", "fair_2", "fair_3"]
    )
    await assert_invariants(pg, mongo, name)


async def test_many_users_many_coupons_at_once(http, gateway, pg, mongo, name):
    coupons = [f"{name}_{n}" for n in range(4)]
    for coupon in coupons:
        await create(http, gateway, coupon, 10)
    attempts = [(f"user_{u}", coupon) for u in range(30) for coupon in coupons]
    attempts += attempts[:40]  # some double dips mixed in

    results = await claim_all(http, gateway, attempts)

    # A duplicate is already_claimed or out_of_stock depending on its twin's luck; the
    # winners are exact: ten a coupon, nobody twice.
    counts = outcomes(results)
    assert counts["claimed"] == 40
    assert set(counts) <= {"claimed", "out_of_stock", "already_claimed"}
    for coupon in coupons:
        facts = await assert_invariants(pg, mongo, coupon)
        assert facts.remaining_amount == 0


async def test_claims_after_the_sell_out_start_no_saga(http, gateway, name):
    """Past the sell-out each worker remembers it: no saga, no write, still a 409."""
    await create(http, gateway, name, 1)
    started = await metric(http, gateway, "saga_started_total", saga="claim")
    results = [await claim(http, gateway, f"u{n}", name) for n in range(30)]

    assert outcomes(results) == {"claimed": 1, "out_of_stock": 29}
    # The winner, then the first refusal in each of 2 workers (a refusal keeps no record
    # in any index: count the sagas started, by this test alone on this gateway).
    sagas = await metric(http, gateway, "saga_started_total", saga="claim") - started
    assert 2 <= sagas <= 3


async def test_after_a_sell_out_claims_are_answered_without_a_saga(
    http, settings, pg, mongo, tmp_path, name
):
    """The sold-out memo: a holder still hears already_claimed, anyone else out_of_stock,
    and neither answer starts a saga or writes anything."""
    remembering = changed(settings, {"sold_out_memo_seconds": 600.0})
    # One worker: the memo is a process's own, and which worker takes a connection is
    # the kernel's choice.
    with gateway_process(remembering, tmp_path / "gateway.log", workers=1) as base:
        await create(http, base, name, 2)
        await claim_all(http, base, [("ann", name), ("bob", name)])
        # Sagas that meet the sell-out, and the first to end teaches the memo.
        learning = await claim_all(http, base, [(f"early_{n}", name) for n in range(20)])
        started = await metric(http, base, "saga_started_total", saga="claim")

        late = await claim_all(
            http, base, [(f"late_{n}", name) for n in range(200)] + [("ann", name)] * 20
        )

        assert await metric(http, base, "saga_started_total", saga="claim") == started
        coupon = await details(http, base, name)
    assert outcomes(learning) == {"out_of_stock": 20}
    assert outcomes(late) == {"out_of_stock": 200, "already_claimed": 20}
    assert sorted(coupon["claimed_by"]) == ["ann", "bob"]
    facts = await assert_invariants(pg, mongo, name)
    assert facts.remaining_amount == 0


async def test_reads_during_a_sale_never_show_more_than_the_amount(http, gateway, pg, mongo, name):
    """remaining_amount + len(claimed_by) <= amount in every GET, also mid-sale."""
    await create(http, gateway, name, 100)
    selling = asyncio.ensure_future(
        claim_all(http, gateway, [(f"user_{n}", name) for n in range(1000)])
    )
    reads = []

    async def reader() -> None:
        while not selling.done():
            reads.append(await details(http, gateway, name))

    await asyncio.gather(*(reader() for _ in range(8)), selling)

    shown = [(r["remaining_amount"], len(r["claimed_by"])) for r in reads]
    torn = [(left, claimants) for left, claimants in shown if left + claimants > 100]
    assert torn == [], f"{len(torn)} of {len(reads)} reads (remaining, claimants) over 100"
    assert len({r["remaining_amount"] for r in reads}) > 2  # the reads saw the sale move
    await assert_invariants(pg, mongo, name)
