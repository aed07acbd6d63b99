"""Sold-out coupons remembered for a moment, with who held their units at that moment.

During a flash sale most claims arrive after the stock is gone, and each would otherwise
cost a saga (two Redis writes, a reserve that inserts and deletes a hold under the hot
row's lock). A process that finds a coupon sold out reads, in one statement, its stock
and the users holding its units, and answers claims from memory: `already_claimed` to a
user whose unit is confirmed, `out_of_stock` to anyone without a unit. A user whose unit
is held by a saga still in flight gets no answer from memory: that saga may yet be
undone, and the claim's own saga finds out (coupons.py). An entry past half its age is
read again by the next claim that meets it (one claim at a time; the others keep the
entry meanwhile).

The guarantee: every answer from memory rests on a read of PostgreSQL at most
SOLD_OUT_MEMO_SECONDS old, so a unit given back by a compensation is claimable again
within that time in every gateway process. For a coupon with more holders than a
process keeps, only "sold out" is remembered and each claim reads the hold index once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from orchestrator.metrics import SOLD_OUT_MEMO_RENEWALS
from sagas.errors import AlreadyClaimed, DomainError, OutOfStock, StoreUnavailable
from sagas.ports import HoldStatus, Inventory

MAX_HOLDERS_KEPT = 10_000  # per coupon
_MAX_KEPT = 200_000  # holders over all coupons; past it the memo starts over


@dataclass(frozen=True)
class SoldOut:
    read_at: float
    holders: Mapping[str, HoldStatus] | None  # each live unit's user and status; None: too many

    async def answer(
        self, inventory: Inventory, coupon_name: str, user_id: str
    ) -> DomainError | None:
        """The memo's answer to this user's claim; None: a saga of theirs is in flight."""
        if self.holders is not None:
            status = self.holders.get(user_id)
        else:
            status = await inventory.hold_status(coupon_name, user_id)
        if status is None:
            return OutOfStock(coupon_name)
        if status is HoldStatus.CONFIRMED:
            return AlreadyClaimed(coupon_name)
        return None


class SoldOutMemo:
    def __init__(
        self,
        inventory: Inventory,
        seconds: float,
        clock: Callable[[], float] = time.monotonic,
        max_holders: int = MAX_HOLDERS_KEPT,
    ) -> None:
        self._inventory = inventory
        self._seconds = seconds
        self._max_holders = max_holders
        self._clock = clock
        self._entries: dict[str, SoldOut] = {}
        self._kept = 0
        self._reading: set[str] = set()

    async def get(self, coupon_name: str) -> SoldOut | None:
        """The coupon's sold-out entry if one is fresh enough to answer from."""
        entry = self._entries.get(coupon_name)
        if entry is None:
            return None
        age = self._clock() - entry.read_at
        if age >= self._seconds:
            self._forget(coupon_name)
            return None
        if age >= self._seconds / 2:
            await self.learn(coupon_name)  # at most one claim at a time reads
        return self._entries.get(coupon_name)

    async def learn(self, coupon_name: str) -> None:
        """Read the coupon's stock and holders; remember them if it is sold out.

        Called after a reserve found no stock, and to renew an entry. A read that fails
        changes nothing: the entry, if any, runs out at its time.
        """
        if self._seconds <= 0 or coupon_name in self._reading:
            return
        entry = self._entries.get(coupon_name)
        if entry is not None and self._clock() - entry.read_at < self._seconds / 2:
            return  # another claim read it a moment ago
        self._reading.add(coupon_name)
        try:
            read_at = self._clock()  # before the read: the entry is never younger than it
            holders = await self._inventory.holders_if_sold_out(coupon_name, self._max_holders)
        except StoreUnavailable:
            return
        finally:
            self._reading.discard(coupon_name)
        self._forget(coupon_name)
        if holders is None:
            return  # stock again (or no such coupon)
        kept = holders if len(holders) <= self._max_holders else None
        if self._kept + len(kept or ()) > _MAX_KEPT:
            self._entries.clear()
            self._kept = 0
        self._entries[coupon_name] = SoldOut(read_at, kept)
        self._kept += len(kept or ())
        SOLD_OUT_MEMO_RENEWALS.inc()

    def _forget(self, coupon_name: str) -> None:
        entry = self._entries.pop(coupon_name, None)
        if entry is not None:
            self._kept -= len(entry.holders or ())
