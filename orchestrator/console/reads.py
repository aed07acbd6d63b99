"""What the console's pages show, read from the ports: the sales table, and the facts of
one saga in each store. A store that does not answer is shown as such, not a failed page:
an operator looks most when a store is down."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from sagas.audit import Auditor
from sagas.errors import StoreNotSetUp, StoreUnavailable
from sagas.ports import Claimed, ClaimLedger, CouponTally, Hold, Inventory, SagaDriver, SagaLog
from sagas.records import SagaRecord, SagaStatus

T = TypeVar("T")

COUPONS_SHOWN = 20  # the newest coupons on the front page; one by name with the filter
PARKED_SHOWN = 10


@dataclass(frozen=True)
class ClaimTotals:
    """Claims answered since the gateway started, every worker together."""

    claimed: int
    unavailable: int
    refused: Mapping[str, int]  # by reason


@dataclass(frozen=True)
class Console:
    """What the console is handed by the app: the ports the replay tool works on, and
    the gateway's claim counters (read, never written: the claim path is not touched)."""

    saga_log: SagaLog
    driver: SagaDriver
    auditor: Auditor
    inventory: Inventory
    claims: ClaimLedger
    claim_totals: Callable[[], ClaimTotals]


@dataclass(frozen=True)
class CouponRow:
    tally: CouponTally
    claims: int | None  # None: MongoDB did not answer
    parked: int


@dataclass(frozen=True)
class Sales:
    coupons: list[CouponRow]
    parked: list[SagaRecord]  # newest first, at most PARKED_SHOWN
    parked_total: int
    stuck: int


async def sales(console: Console, name: str | None = None) -> Sales:
    tallies = await console.inventory.tallies(COUPONS_SHOWN, name)
    counts = await asyncio.gather(*(_count_or_none(console.claims, t.stock.name) for t in tallies))
    parked = await console.saga_log.find(SagaStatus.FAILED, None)
    by_coupon = Counter(str(r.payload.get("coupon_name", "")) for r in parked)
    stuck = await console.saga_log.stuck(None)
    rows = [
        CouponRow(tally, count, by_coupon[tally.stock.name])
        for tally, count in zip(tallies, counts, strict=True)
    ]
    return Sales(rows, parked[:PARKED_SHOWN], len(parked), len(stuck))


async def _count_or_none(claims: ClaimLedger, coupon: str) -> int | None:
    found = await fact(lambda: claims.count(coupon))
    return found.value


@dataclass(frozen=True)
class Fact(Generic[T]):
    """What one store said, or that it did not answer (`unavailable` says why)."""

    value: T | None
    unavailable: str = ""


async def fact(read: Callable[[], Awaitable[T]]) -> Fact[T]:
    try:
        return Fact(await read())
    except (StoreUnavailable, StoreNotSetUp) as error:
        return Fact(None, str(error) or type(error).__name__)


@dataclass(frozen=True)
class StoreFacts:
    """One saga's facts beside its log: its hold (PostgreSQL), its claim (MongoDB)."""

    hold: Fact[Hold | None]
    claim: Fact[Claimed | None]


async def store_facts(console: Console, saga_id: str) -> StoreFacts:
    hold, claim = await asyncio.gather(
        fact(lambda: console.inventory.hold(saga_id)),
        fact(lambda: console.claims.claim_of(saga_id)),
    )
    return StoreFacts(hold, claim)
