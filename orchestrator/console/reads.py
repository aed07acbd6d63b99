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
    parked_total: int | None  # None, as `stuck`: Redis did not answer
    stuck: int | None
    unavailable: dict[str, str]  # what could not be read, by store: why


async def sales(console: Console, name: str | None = None) -> Sales:
    """Each store read apart: the page shows what the others said when one is away."""
    tallies, parked, stuck = await asyncio.gather(
        fact(lambda: console.inventory.tallies(COUPONS_SHOWN, name)),
        fact(lambda: console.saga_log.find(SagaStatus.FAILED, None)),
        fact(lambda: console.saga_log.stuck(None)),
    )
    unavailable = {}
    if tallies.unavailable:
        unavailable["postgresql"] = tallies.unavailable
    if parked.unavailable or stuck.unavailable:
        unavailable["redis"] = parked.unavailable or stuck.unavailable
    coupons = tallies.value or []
    counts = await asyncio.gather(*(_count_or_none(console.claims, t.stock.name) for t in coupons))
    if any(count is None for count in counts):
        unavailable["mongodb"] = "claim documents could not be counted"
    by_coupon = Counter(str(r.payload.get("coupon_name", "")) for r in parked.value or [])
    rows = [
        CouponRow(tally, count, by_coupon[tally.stock.name])
        for tally, count in zip(coupons, counts, strict=True)
    ]
    parked_total = None if parked.value is None else len(parked.value)
    stuck_total = None if stuck.value is None else len(stuck.value)
    return Sales(rows, (parked.value or [])[:PARKED_SHOWN], parked_total, stuck_total, unavailable)


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
    except Exception as error:
        # A store that refuses us fails with whatever its driver raises (a database
        # closed to connections is no outage to the adapters, and is not classified):
        # the page shows it by name, beside what the other stores said.
        return Fact(None, f"{type(error).__name__}: {error}")


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
