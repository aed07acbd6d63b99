"""Repeat claims answered from the claim in flight or from memory (no store here: the
saga is a future the test settles)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from orchestrator.claims.duplicates import RepeatClaims
from sagas.errors import AlreadyClaimed, CouponNotFound, OutOfStock, StoreUnavailable


async def lead_then_repeat(repeats: RepeatClaims, end: BaseException | None):
    """A lead that ends with `end` (None: its claim stands) while a repeat waits on it."""
    try:
        with repeats.leading("ann", "PROMO"):
            repeat = asyncio.ensure_future(repeats.known_answer("ann", "PROMO"))
            await asyncio.sleep(0)  # one turn of the loop: the repeat is waiting now
            assert not repeat.done()
            if end is not None:
                raise end
    except BaseException as error:
        assert error is end
    return await repeat


async def test_a_repeat_of_a_claim_that_stands_is_already_claimed():
    answer = await lead_then_repeat(RepeatClaims(10), None)
    assert isinstance(answer, AlreadyClaimed)


@pytest.mark.parametrize("refusal", [OutOfStock, AlreadyClaimed, CouponNotFound])
async def test_a_repeat_of_a_refused_claim_gets_the_same_refusal(refusal):
    answer = await lead_then_repeat(RepeatClaims(10), refusal("PROMO"))
    assert type(answer) is refusal and answer is not None


@pytest.mark.parametrize("end", [StoreUnavailable("redis"), asyncio.CancelledError()])
async def test_a_repeat_of_a_claim_that_says_nothing_runs_its_own_saga(end):
    repeats = RepeatClaims(10)
    assert await lead_then_repeat(repeats, end) is None
    assert await repeats.known_answer("ann", "PROMO") is None  # nothing remembered


async def test_once_its_saga_has_begun_the_lead_answers_from_the_saga_not_its_client():
    repeats = RepeatClaims(10)
    saga: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def claim() -> None:
        with repeats.leading("ann", "PROMO") as lead:
            assert lead is not None
            lead.follow(saga)
            await asyncio.shield(saga)

    client = asyncio.ensure_future(claim())
    await asyncio.sleep(0)
    repeat = asyncio.ensure_future(repeats.known_answer("ann", "PROMO"))
    client.cancel()  # the lead's client hangs up; its saga runs on
    await asyncio.sleep(0)
    assert not repeat.done()

    saga.set_result(None)

    assert isinstance(await repeat, AlreadyClaimed)


async def test_a_second_lead_while_one_is_in_flight_runs_alone():
    repeats = RepeatClaims(10)
    with repeats.leading("ann", "PROMO") as first, repeats.leading("ann", "PROMO") as second:
        assert first is not None and second is None


async def test_it_remembers_only_the_latest_claims_that_stood():
    repeats = RepeatClaims(2)
    for user in ("ann", "bob", "cid"):
        with repeats.leading(user, "PROMO"):
            pass

    assert len(repeats) == 2
    assert await repeats.known_answer("ann", "PROMO") is None  # the oldest, forgotten
    assert isinstance(await repeats.known_answer("cid", "PROMO"), AlreadyClaimed)


async def test_zero_remembers_nothing():
    repeats = RepeatClaims(0)
    with repeats.leading("ann", "PROMO"):
        pass
    assert len(repeats) == 0
    assert await repeats.known_answer("ann", "PROMO") is None


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def refused_already_claimed(repeats: RepeatClaims, user: str = "ann") -> None:
    with contextlib.suppress(AlreadyClaimed), repeats.leading(user, "PROMO"):
        raise AlreadyClaimed("PROMO")  # another worker's saga holds the unit


async def test_a_claim_refused_as_already_claimed_is_answered_so_for_its_seconds_only():
    clock = Clock()
    repeats = RepeatClaims(10, refusal_seconds=1.0, clock=clock)
    await refused_already_claimed(repeats)

    clock.now += 0.9
    assert isinstance(await repeats.known_answer("ann", "PROMO"), AlreadyClaimed)
    clock.now += 0.1  # the other saga may have been undone by now: ask the stores again
    assert await repeats.known_answer("ann", "PROMO") is None
    assert len(repeats) == 0


async def test_without_seconds_a_refusal_is_not_remembered():
    repeats = RepeatClaims(10, refusal_seconds=0.0, clock=Clock())
    await refused_already_claimed(repeats)
    assert await repeats.known_answer("ann", "PROMO") is None


async def test_a_claim_that_stood_outlives_a_refusal_remembered_for_it():
    clock = Clock()
    repeats = RepeatClaims(10, refusal_seconds=1.0, clock=clock)
    with repeats.leading("ann", "PROMO"):
        pass
    await refused_already_claimed(repeats)

    clock.now += 3600
    assert isinstance(await repeats.known_answer("ann", "PROMO"), AlreadyClaimed)
