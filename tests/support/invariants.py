"""docs/DESIGN.md's invariants 1-4, checked directly against PostgreSQL and MongoDB.

This reads the stores with its own queries rather than through the service, so a bug in
an adapter cannot hide itself.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import asyncpg
from pymongo.asynchronous.database import AsyncDatabase

from tests.support.waiting import eventually, none_held


@dataclass(frozen=True)
class CouponFacts:
    amount: int
    remaining_amount: int
    holds: dict[str, tuple[str, str]]  # saga_id -> (user_id, status)
    claims: dict[str, str]  # saga_id -> user_id

    @property
    def live_holds(self) -> dict[str, tuple[str, str]]:
        return {s: h for s, h in self.holds.items() if h[1] != "released"}


async def read_facts(
    pg: asyncpg.Pool, mongo: AsyncDatabase[dict[str, Any]], coupon: str
) -> CouponFacts:
    row = await pg.fetchrow("SELECT amount, remaining_amount FROM coupons WHERE name = $1", coupon)
    assert row is not None, f"coupon {coupon!r} is not in PostgreSQL"
    holds = await pg.fetch(
        "SELECT saga_id::text AS saga_id, user_id, status FROM holds WHERE coupon_name = $1", coupon
    )
    claims = [doc async for doc in mongo.claims.find({"coupon_name": coupon})]
    return CouponFacts(
        amount=row["amount"],
        remaining_amount=row["remaining_amount"],
        holds={h["saga_id"]: (h["user_id"], h["status"]) for h in holds},
        claims={doc["saga_id"]: doc["user_id"] for doc in claims},
    )


async def assert_conserved(pg: asyncpg.Pool, coupon: str) -> None:
    """Invariant 3 alone, which holds at every moment, also mid-sale: remaining_amount +
    holds not released == amount. One statement, so stock and holds are one snapshot."""
    amount, left, live = await pg.fetchrow(
        "SELECT amount, remaining_amount, (SELECT count(*) FROM holds "
        "WHERE coupon_name = $1 AND status <> 'released') FROM coupons WHERE name = $1",
        coupon,
    )
    assert left + live == amount, f"remaining {left} + {live} live holds != amount {amount}"


async def assert_invariants(
    pg: asyncpg.Pool, mongo: AsyncDatabase[dict[str, Any]], coupon: str
) -> CouponFacts:
    """Invariants 1-4 for a coupon whose claims have all been answered. Returns the facts
    for more checks.

    A claim is answered at its pivot and its confirm follows (docs/DESIGN.md, "When the
    200 comes"), so invariant 4 holds once the sagas have ended: this first waits, within
    bounds, for no unit of the coupon to be held."""
    await eventually(lambda: none_held(pg, coupon))
    facts = await read_facts(pg, mongo, coupon)
    claim_users = Counter(facts.claims.values())
    live_users = Counter(user for user, _ in facts.live_holds.values())

    # 1. No oversell.
    assert facts.remaining_amount >= 0
    assert len(facts.claims) <= facts.amount
    # 2. No double claim, in either store.
    assert max(claim_users.values(), default=1) == 1, claim_users.most_common(3)
    assert max(live_users.values(), default=1) == 1, live_users.most_common(3)
    # 3. Conservation.
    assert facts.remaining_amount + len(facts.live_holds) == facts.amount
    # 4. Convergence: nothing left held, and confirmed holds match claim documents one to one.
    assert [s for s, (_, status) in facts.holds.items() if status == "held"] == []
    confirmed = {s: user for s, (user, status) in facts.holds.items() if status == "confirmed"}
    assert confirmed == facts.claims, {
        "confirmed without a claim document": sorted(set(confirmed) - set(facts.claims))[:5],
        "claim documents without a confirmed unit": sorted(set(facts.claims) - set(confirmed))[:5],
    }
    assert facts.remaining_amount + len(facts.claims) == facts.amount
    return facts


async def assert_written_once(
    pg: asyncpg.Pool, mongo: AsyncDatabase[dict[str, Any]], coupon: str
) -> None:
    """No saga wrote its hold or its claim document twice, and no user holds two live
    units or two claims: what the unique indexes promise, counted rather than trusted
    (`read_facts` keys both by saga, which would hide a second copy)."""
    twice_in_pg = await pg.fetch(
        "SELECT 'saga' AS what, saga_id::text AS id FROM holds WHERE coupon_name = $1 "
        "GROUP BY saga_id HAVING count(*) > 1 UNION ALL "
        "SELECT 'user', user_id FROM holds WHERE coupon_name = $1 AND status <> 'released' "
        "GROUP BY user_id HAVING count(*) > 1",
        coupon,
    )
    assert [tuple(row) for row in twice_in_pg] == []
    for key in ("saga_id", "user_id"):
        twice = mongo.claims.aggregate(
            [
                {"$match": {"coupon_name": coupon}},
                {"$group": {"_id": f"${key}", "copies": {"$sum": 1}}},
                {"$match": {"copies": {"$gt": 1}}},
            ]
        )
        assert [doc async for doc in await twice] == [], f"claim documents with one {key}"
