"""Group commit: concurrent calls of one kind share a store round trip.

A call queues its item and waits for its own answer. When no batch is in flight one is
sent at once (no timer, so a lone call waits for nothing); calls that arrive while a
batch is in flight go together in the next one, sent the moment it returns. So batches
are small at low load and grow exactly when the store is the bottleneck.

The batch function answers each item by position: a result, or the exception that item
alone raises. If the whole batch fails, each caller gets its own copy of the error (the
saga engine annotates the error it is given, and sagas must not share one).
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

BatchFunction = Callable[[Sequence[Item]], Awaitable[Sequence[Result | BaseException]]]

# Items per batch. Each process runs at most MAX_CONCURRENT_SAGAS sagas (16 by default),
# each with one call in flight, so a claim step's batch rarely reaches this; the cap
# bounds one statement's arrays, one pipeline's size and how long one transaction holds
# the hot coupon row if that limit is raised far. Calls past it wait for the next batch.
MAX_BATCH = 256


@dataclass
class _Waiting(Generic[Item, Result]):
    item: Item
    answer: asyncio.Future[Result] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class Coalescer(Generic[Item, Result]):
    def __init__(
        self,
        send: BatchFunction[Item, Result],
        *,
        max_batch: int = MAX_BATCH,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        """`on_batch`: told each batch's size as it is sent (a metric)."""
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._send = send
        self._max_batch = max_batch
        self._on_batch = on_batch
        self._queue: deque[_Waiting[Item, Result]] = deque()
        self._sender: asyncio.Task[None] | None = None
        self.batches_sent = 0

    async def submit(self, item: Item) -> Result:
        """The item's own result, or its own exception. Cancelling the wait withdraws
        an item not yet sent; one already sent stays in its batch (the others' answers
        do not depend on it), and its answer is dropped."""
        waiting: _Waiting[Item, Result] = _Waiting(item)
        self._queue.append(waiting)
        if self._sender is None:
            # A context of its own: the batch belongs to no single caller (nor its log
            # context), and cancelling a caller must not cancel the batch.
            self._sender = asyncio.create_task(
                self._send_while_waiting(), context=contextvars.Context()
            )
        return await waiting.answer

    async def _send_while_waiting(self) -> None:
        try:
            while batch := self._next_batch():
                await self._send_one(batch)
        finally:
            self._sender = None
            # Cancelled (the loop is closing): nobody is left to send what is queued.
            while self._queue:
                self._queue.popleft().answer.cancel()

    def _next_batch(self) -> list[_Waiting[Item, Result]]:
        batch: list[_Waiting[Item, Result]] = []
        while self._queue and len(batch) < self._max_batch:
            waiting = self._queue.popleft()
            if not waiting.answer.done():  # done here: its caller gave up, never sent
                batch.append(waiting)
        return batch

    async def _send_one(self, batch: list[_Waiting[Item, Result]]) -> None:
        self.batches_sent += 1
        try:
            if self._on_batch is not None:
                self._on_batch(len(batch))
            results = await self._send([waiting.item for waiting in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"a batch of {len(batch)} got {len(results)} answers")
        except Exception as error:
            for waiting in batch:
                _answer(waiting.answer, _own_copy(error))
            return
        except BaseException:  # cancelled (the loop is closing): no answer will come
            for waiting in batch:
                waiting.answer.cancel()
            raise
        for waiting, result in zip(batch, results, strict=True):
            _answer(waiting.answer, result)


def _answer(answer: asyncio.Future[Result], result: Result | BaseException) -> None:
    if answer.done():  # its caller gave up while the batch was in flight
        return
    if isinstance(result, BaseException):
        answer.set_exception(result)
    else:
        answer.set_result(result)


def _own_copy(error: Exception) -> Exception:
    """A copy of a batch's error for one caller: its attributes (StoreUnavailable's
    `maybe_applied`), its cause and its traceback; notes added to it stay its own."""
    try:
        mine = copy.copy(error)
    except Exception:  # an exception type that cannot be rebuilt from its args
        mine = RuntimeError(str(error))
    mine.__cause__ = error.__cause__
    mine.__context__ = error.__context__
    mine.__suppress_context__ = error.__suppress_context__
    if notes := getattr(error, "__notes__", None):
        mine.__notes__ = list(notes)  # copy.copy shares the list
    return mine.with_traceback(error.__traceback__)
