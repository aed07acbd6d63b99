"""Admission: a few sagas at a time, the rest in arrival order, none waiting forever."""

from __future__ import annotations

import asyncio

import pytest

from orchestrator.claims.admission import Admission
from orchestrator.http.errors import AtCapacity


async def test_past_its_slots_claims_wait_and_enter_in_arrival_order():
    admission = Admission(slots=2, wait_seconds=10)
    entered: list[int] = []

    async def claim(n: int) -> None:
        await admission.enter()
        entered.append(n)

    await claim(0)
    await claim(1)
    waiting = [asyncio.ensure_future(claim(n)) for n in range(2, 6)]
    await asyncio.sleep(0)
    assert entered == [0, 1]

    for _ in range(4):
        admission.leave()
        await asyncio.sleep(0)
    await asyncio.gather(*waiting)
    assert entered == [0, 1, 2, 3, 4, 5]


async def test_a_claim_that_cannot_enter_in_time_is_refused():
    admission = Admission(slots=1, wait_seconds=0.01)
    await admission.enter()

    with pytest.raises(AtCapacity):
        await admission.enter()

    admission.leave()
    await admission.enter()  # the refused claim took no slot with it


async def test_a_slot_is_held_until_its_saga_ends_even_if_the_client_left():
    admission = Admission(slots=1, wait_seconds=0.01)
    finish = asyncio.Event()

    async def handler() -> None:
        await admission.enter()
        saga = asyncio.ensure_future(finish.wait())
        saga.add_done_callback(admission.leave)
        await asyncio.shield(saga)

    request = asyncio.ensure_future(handler())
    await asyncio.sleep(0)
    request.cancel()  # the client hung up; the saga runs on
    with pytest.raises(asyncio.CancelledError):
        await request
    with pytest.raises(AtCapacity):
        await admission.enter()

    finish.set()
    await asyncio.sleep(0)
    await admission.enter()
