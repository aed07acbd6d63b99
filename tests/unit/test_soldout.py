"""The sold-out memo: remembered for its time, then asked about again."""

from __future__ import annotations

from orchestrator.soldout import SoldOutMemo


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_sold_out_coupon_is_remembered_for_its_seconds_only():
    clock = Clock()
    memo = SoldOutMemo(1.0, clock)
    assert not memo.knows("PROMO")

    memo.remember("PROMO")
    clock.now += 0.99
    assert memo.knows("PROMO")
    assert not memo.knows("OTHER")

    clock.now += 0.01  # a unit given back is claimable again from here on
    assert not memo.knows("PROMO")


def test_zero_seconds_turns_it_off():
    memo = SoldOutMemo(0.0, Clock())
    memo.remember("PROMO")
    assert not memo.knows("PROMO")
