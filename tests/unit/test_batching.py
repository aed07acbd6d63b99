"""The coalescer with a fake batch function (not a store): who waits, who shares a batch,
who gets which answer."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from sagas.errors import OutOfStock, StoreNotSetUp, StoreUnavailable
from services.batching import Coalescer


class Gated:
    """A batch function that records each batch and answers only when the test opens it."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gates: list[asyncio.Event] = []
        self.fail_with: Exception | None = None
        self.arrived = asyncio.Event()

    async def __call__(self, items: Sequence[int]) -> list[int | BaseException]:
        self.batches.append(list(items))
        self.arrived.set()
        gate = asyncio.Event()
        self.gates.append(gate)
        await gate.wait()
        if self.fail_with is not None:
            raise self.fail_with
        return [ValueError(item) if item < 0 else item * 10 for item in items]

    async def sent(self, count: int) -> None:
        while len(self.batches) < count:
            self.arrived.clear()
            await self.arrived.wait()

    def open(self, index: int) -> None:
        self.gates[index].set()


async def started(*calls) -> list[asyncio.Task]:
    """Start the calls as tasks, in this order, and let each queue its item."""
    tasks = []
    for call in calls:
        tasks.append(asyncio.ensure_future(call))
        await asyncio.sleep(0)
    return tasks


async def test_a_lone_call_is_sent_at_once_and_gets_its_result():
    send = Gated()
    coalescer = Coalescer(send)

    (task,) = await started(coalescer.submit(1))
    await send.sent(1)
    send.open(0)

    assert await task == 10
    assert send.batches == [[1]]


async def test_calls_arriving_while_a_batch_is_in_flight_go_together_in_the_next():
    send = Gated()
    coalescer = Coalescer(send)
    first = await started(coalescer.submit(1))
    await send.sent(1)

    waiting = await started(coalescer.submit(2), coalescer.submit(3), coalescer.submit(4))
    assert send.batches == [[1]]  # nothing more is sent while the first is in flight
    send.open(0)
    await send.sent(2)
    send.open(1)

    assert await asyncio.gather(*first, *waiting) == [10, 20, 30, 40]
    assert send.batches == [[1], [2, 3, 4]]


async def test_each_item_gets_its_own_exception_and_the_others_their_results():
    send = Gated()
    coalescer = Coalescer(send)
    await started(coalescer.submit(0))
    await send.sent(1)
    tasks = await started(coalescer.submit(5), coalescer.submit(-1), coalescer.submit(6))
    send.open(0)
    await send.sent(2)
    send.open(1)

    results = await asyncio.gather(*tasks, return_exceptions=True)

    assert results[0] == 50 and results[2] == 60
    assert isinstance(results[1], ValueError) and results[1].args == (-1,)


async def test_a_failed_batch_gives_each_caller_its_own_copy_of_the_error():
    send = Gated()
    coalescer = Coalescer(send)
    await started(coalescer.submit(0))
    await send.sent(1)
    tasks = await started(coalescer.submit(1), coalescer.submit(2))
    send.fail_with = StoreUnavailable("postgresql", maybe_applied=False)
    send.open(0)
    await send.sent(2)
    send.open(1)

    errors = await asyncio.gather(*tasks, return_exceptions=True)

    assert all(isinstance(error, StoreUnavailable) for error in errors)
    assert errors[0] is not errors[1]
    assert [(e.store, e.maybe_applied) for e in errors] == [("postgresql", False)] * 2
    errors[0].maybe_applied = True  # the engine marks its own error
    errors[0].add_note("mine")
    assert errors[1].maybe_applied is False and not getattr(errors[1], "__notes__", [])


@pytest.mark.parametrize(
    "error",
    [
        StoreUnavailable("mongodb", maybe_applied=False),
        StoreNotSetUp("postgresql", "create it (createdb)"),
        OutOfStock("PROMO"),
    ],
    ids=type,
)
async def test_each_callers_copy_of_a_batch_error_reads_as_the_error_itself(error):
    """Its type, words and attributes: an operator reads the same line in the saga's
    history, and the error table maps it to the same answer."""
    send = Gated()
    coalescer = Coalescer(send)
    tasks = await started(coalescer.submit(1), coalescer.submit(2))
    send.fail_with = error
    for batch in range(2):
        await send.sent(batch + 1)
        send.open(batch)

    copies = await asyncio.gather(*tasks, return_exceptions=True)

    assert [(type(e), str(e), vars(e)) for e in copies] == [
        (type(error), str(error), vars(error))
    ] * 2


async def test_the_cap_splits_a_queue_into_batches_in_arrival_order():
    send = Gated()
    coalescer = Coalescer(send, max_batch=2)
    first = await started(coalescer.submit(0))
    await send.sent(1)
    rest = await started(*(coalescer.submit(item) for item in range(1, 6)))
    for index in range(3):
        send.open(index)
        await send.sent(index + 2)
    send.open(3)

    assert await asyncio.gather(*first, *rest) == [0, 10, 20, 30, 40, 50]
    assert send.batches == [[0], [1, 2], [3, 4], [5]]


async def test_a_caller_cancelled_before_its_batch_is_withdrawn_and_others_are_answered():
    send = Gated()
    coalescer = Coalescer(send)
    await started(coalescer.submit(0))
    await send.sent(1)
    keep, give_up, also_keep = await started(
        coalescer.submit(1), coalescer.submit(2), coalescer.submit(3)
    )

    give_up.cancel()
    send.open(0)
    await send.sent(2)
    send.open(1)

    assert await keep == 10 and await also_keep == 30
    with pytest.raises(asyncio.CancelledError):
        await give_up
    assert send.batches[1] == [1, 3]


async def test_a_caller_cancelled_while_its_batch_is_in_flight_leaves_the_batch_whole():
    send = Gated()
    coalescer = Coalescer(send)
    await started(coalescer.submit(0))
    await send.sent(1)
    give_up, keep = await started(coalescer.submit(1), coalescer.submit(2))
    send.open(0)
    await send.sent(2)

    give_up.cancel()
    with pytest.raises(asyncio.CancelledError):
        await give_up
    send.open(1)

    assert await keep == 20
    assert send.batches == [[0], [1, 2]]
    (later,) = await started(coalescer.submit(3))  # the coalescer still works
    await send.sent(3)
    send.open(2)
    assert await later == 30


async def test_a_batch_function_answering_the_wrong_number_fails_every_caller():
    async def short(items: Sequence[int]) -> list[int]:
        return [1]

    coalescer = Coalescer(short)
    results = await asyncio.gather(coalescer.submit(1), coalescer.submit(2), return_exceptions=True)

    assert all(isinstance(result, RuntimeError) for result in results)
