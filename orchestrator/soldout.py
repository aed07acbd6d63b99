"""Sold-out coupons remembered for a moment: during a flash sale most claims arrive after
the stock is gone, and each would otherwise cost a saga (three Redis writes) and a
reserve that inserts and deletes a hold under the hot row's lock.

The guarantee: a unit given back (a compensation) is claimable again within
SOLD_OUT_MEMO_SECONDS in every gateway process. Until then a process that has seen the
coupon sold out answers `out_of_stock` after one indexed read, which still tells a user
who holds the coupon `already_claimed`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

_MAX_REMEMBERED = 10_000  # coupons; a process that sees more forgets all and starts over


class SoldOutMemo:
    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._seconds = seconds
        self._clock = clock
        self._until: dict[str, float] = {}

    def remember(self, coupon_name: str) -> None:
        if self._seconds <= 0:
            return
        if len(self._until) >= _MAX_REMEMBERED:
            self._until.clear()
        self._until[coupon_name] = self._clock() + self._seconds

    def knows(self, coupon_name: str) -> bool:
        until = self._until.get(coupon_name)
        if until is None:
            return False
        if self._clock() >= until:
            del self._until[coupon_name]
            return False
        return True
