"""Repeat claims answered without a saga, where the answer is already known in this process.

A user who taps "claim" again (or a client that retries) asks for what this process is
already doing or has done. Two cases are answered without touching a store:

- The same (user, coupon) is in flight here: the repeat waits for that saga and answers
  from its outcome. A claim that stands answers `already_claimed`; a business refusal
  (`out_of_stock`, `already_claimed`, `coupon_not_found`) answers the same refusal, which
  a saga of its own would meet too, and a claim in doubt the same doubt (the unit is
  still held by it). Any other end (a store away, a full queue, a client
  that hung up before its saga began) says nothing about the claim, so the repeat runs
  a saga of its own.
- This process has seen the claim stand: `already_claimed` from memory. A claim past its
  pivot is never undone, so the memory cannot go stale; it keeps the last
  CLAIMED_MEMO_ENTRIES of them, and forgetting one only costs a saga.
- This process has seen the claim refused `already_claimed` (the user's unit is held by
  a saga another worker ran): the same answer from memory, for SOLD_OUT_MEMO_SECONDS
  only, because that other saga may not have passed its pivot and may yet be undone. It
  is the sold-out memo's guarantee: an answer from memory rests on a store's answer at
  most that old.
- This process answered the claim in doubt (its saga did not settle in time): the same
  doubt while the saga log says that saga is still open (one read of its record), so a
  repeat is never told `already_claimed` for a claim that may yet be undone, nor let
  past it to take a second unit's worth of doubt.

Claims that reach another worker are not seen here and run their saga, as before: the
unique (user, coupon) hold is still what refuses them.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sagas.errors import AlreadyClaimed, DomainError, InDoubt

Key = tuple[str, str]  # (user_id, coupon_name)
# What a saga in flight ends with: None when its claim stands, else the error it raised.
Outcome = BaseException | None


class Lead:
    """The first claim of a (user, coupon) in flight; repeats wait for its outcome."""

    def __init__(self, repeats: RepeatClaims, key: Key) -> None:
        self._repeats = repeats
        self._key = key
        self.outcome: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._following = False

    def follow(self, saga: asyncio.Future[Any]) -> None:
        """Take the outcome from the saga itself: it runs on when its client hangs up."""
        self._following = True
        saga.add_done_callback(self._saga_done)

    def _saga_done(self, saga: asyncio.Future[Any]) -> None:
        self.settle(asyncio.CancelledError() if saga.cancelled() else saga.exception())

    def claim_ended(self, outcome: Outcome) -> None:
        """The claim's own end is the outcome only when it never started its saga."""
        if not self._following:
            self.settle(outcome)

    def settle(self, outcome: Outcome) -> None:
        if self.outcome.done():
            return
        self.outcome.set_result(outcome)
        self._repeats.settled(self._key, self, outcome)


class RepeatClaims:
    def __init__(
        self,
        remembered: int,
        refusal_seconds: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        still_open: Callable[[str], Awaitable[bool]] | None = None,
    ) -> None:
        """`still_open(saga_id)`: whether a saga answered in doubt is still unsettled."""
        self._remembered = remembered
        self._refusal_seconds = refusal_seconds
        self._clock = clock
        self._still_open = still_open
        self._in_flight: dict[Key, Lead] = {}
        self._in_doubt: OrderedDict[Key, str] = OrderedDict()  # each claim's saga id
        # Each (user, coupon) known to be held, until when: forever once it stood here.
        self._held: OrderedDict[Key, float] = OrderedDict()

    def __len__(self) -> int:
        """How many claims are remembered as held."""
        return len(self._held)

    async def known_answer(self, user_id: str, coupon_name: str) -> Exception | None:
        """The answer this process already has for the claim, if any; None: run a saga."""
        key = (user_id, coupon_name)
        if self._held_now(key):
            return AlreadyClaimed(coupon_name)
        if (in_doubt := await self._still_in_doubt(key)) is not None:
            return in_doubt
        lead = self._in_flight.get(key)
        if lead is None:
            return None
        # Shielded: a repeat whose client hangs up must not cancel the lead's outcome.
        outcome = await asyncio.shield(lead.outcome)
        if outcome is None:
            return AlreadyClaimed(coupon_name)
        if isinstance(outcome, DomainError):
            return type(outcome)(coupon_name)
        if isinstance(outcome, InDoubt):
            return InDoubt(outcome.saga_id, outcome.why)
        return None

    @contextmanager
    def leading(self, user_id: str, coupon_name: str) -> Iterator[Lead | None]:
        """Around a claim, from its arrival: repeats that arrive meanwhile wait for it.
        None when a lead is in flight already (its repeat found it failed transiently and
        runs alone)."""
        key = (user_id, coupon_name)
        if key in self._in_flight:
            yield None
            return
        lead = self._in_flight[key] = Lead(self, key)
        try:
            yield lead
        except BaseException as error:
            lead.claim_ended(error)
            raise
        else:
            lead.claim_ended(None)

    def settled(self, key: Key, lead: Lead, outcome: Outcome) -> None:
        if self._in_flight.get(key) is lead:
            del self._in_flight[key]
        if isinstance(outcome, InDoubt) and self._still_open is not None:
            self._in_doubt[key] = outcome.saga_id
            self._in_doubt.move_to_end(key)
            while len(self._in_doubt) > self._remembered:
                self._in_doubt.popitem(last=False)
        if outcome is None:
            self._remember(key, until=math.inf)
        elif isinstance(outcome, AlreadyClaimed) and self._refusal_seconds > 0:
            self._remember(key, until=self._clock() + self._refusal_seconds)

    async def _still_in_doubt(self, key: Key) -> InDoubt | None:
        saga_id = self._in_doubt.get(key)
        if saga_id is None or self._still_open is None:
            return None
        if await self._still_open(saga_id):
            return InDoubt(saga_id, "this claim is not settled yet")
        self._in_doubt.pop(key, None)
        return None

    def _held_now(self, key: Key) -> bool:
        until = self._held.get(key)
        if until is None:
            return False
        if until <= self._clock():
            del self._held[key]
            return False
        self._held.move_to_end(key)
        return True

    def _remember(self, key: Key, *, until: float) -> None:
        self._held[key] = max(until, self._held.get(key, until))
        self._held.move_to_end(key)
        while len(self._held) > self._remembered:
            self._held.popitem(last=False)
