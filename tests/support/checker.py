"""A claim history read against the settled stores, Jepsen's way: what every completed
operation promised, whether the stores keep it, and how available the sale was.

`violations` is pure (the unit tests feed it hand-written histories); `check` reads the
stores and runs the audit. The per-answer rules of tests/support/sale.py's `judge` are
used as they are (a 200 stands, a refusal took nothing, every claim is accounted for);
this adds the invariants as findings, `already_claimed` and `out_of_stock` read
against the stores, at most one effect of unknown outcome, and availability.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

import asyncpg
from pymongo.asynchronous.database import AsyncDatabase

from orchestrator.settings import Settings
from tests.support.cli import coupon_saga
from tests.support.invariants import CouponFacts, read_facts
from tests.support.op_history import History, Op
from tests.support.sale import judge

ANSWERED = (200, 409)


def invariant_violations(facts: CouponFacts) -> list[str]:
    """DESIGN.md's invariants 1-4 once every saga has ended."""
    found = []
    claim_users = Counter(facts.claims.values())
    live_users = Counter(user for user, _ in facts.live_holds.values())
    if facts.remaining_amount < 0 or len(facts.claims) > facts.amount:
        found.append(f"1 oversold: {len(facts.claims)} claims of {facts.amount}")
    for user in set(claim_users) | set(live_users):
        if claim_users[user] > 1 or live_users[user] > 1:
            found.append(f"2 {user} claimed {claim_users[user]}x, holds {live_users[user]}x")
    if facts.remaining_amount + len(facts.live_holds) != facts.amount:
        found.append(f"3 remaining {facts.remaining_amount} + live {len(facts.live_holds)}")
    held = [saga for saga, (_, status) in facts.holds.items() if status == "held"]
    confirmed = {s: user for s, (user, status) in facts.holds.items() if status == "confirmed"}
    if held or confirmed != facts.claims:
        found.append(f"4 held {held[:3]}, confirmed != claims {confirmed != facts.claims}")
    return found


def violations(history: list[Op], facts: CouponFacts, claimed_by: list[str]) -> list[str]:
    """Every promise of the history the settled stores break (empty: none)."""
    found = invariant_violations(facts)
    try:
        verdict = judge([op.as_answer() for op in history], facts, claimed_by)
    except AssertionError as broken:
        found.append(f"judge: {broken}")
    else:
        found += [f"a refusal whose saga made a claim: {a}" for a in verdict.false_answers]
    holders = set(facts.claims.values())
    ops_of: dict[str, list[Op]] = defaultdict(list)
    for op in history:
        ops_of[op.user_id].append(op)
    for op in history:
        if _falsely_already_claimed(op, ops_of[op.user_id], holders):
            found.append(f"already_claimed for {op.user_id}, who holds nothing")
        if op.status == 409 and op.error == "out_of_stock" and _never_sold_out(facts):
            found.append(f"out_of_stock for {op.user_id}, the stock never ran out")
        if op.kind == "fail" and op.saga_id in facts.claims:
            found.append(f"{op.status} for {op.user_id} took a unit: saga {op.saga_id}")
    return found


def _falsely_already_claimed(op: Op, users_ops: list[Op], holders: set[str]) -> bool:
    if op.status != 409 or op.error != "already_claimed" or op.user_id in holders:
        return False
    # Also true while a claim of the same user is in flight, which may then fail.
    return not any(_overlap(op, other) for other in users_ops if other is not op)


def _overlap(one: Op, other: Op) -> bool:
    return one.invoked_at <= other.completed_at and other.invoked_at <= one.completed_at


def _never_sold_out(facts: CouponFacts) -> bool:
    """Units are left at the end and none was ever given back: no moment had none free."""
    released = any(status == "released" for _, status in facts.holds.values())
    return facts.remaining_amount > 0 and not released


@dataclass(frozen=True)
class Availability:
    name: str
    requests: int
    answered: int  # 200 or 409

    @property
    def share(self) -> float:
        return self.answered / self.requests if self.requests else 1.0

    def __str__(self) -> str:
        return f"{self.name}: {self.answered}/{self.requests} answered ({self.share:.1%})"


def availability(history: History) -> list[Availability]:
    """The share answered 200/409 among requests in flight at some moment of each fault
    (sent before it began and cut by it counts as during), and among all the others."""

    def counted(name: str, ops: list[Op]) -> Availability:
        return Availability(name, len(ops), sum(op.status in ANSWERED for op in ops))

    rows = [counted(w.name, [op for op in history.ops if w.overlaps(op)]) for w in history.windows]
    outside = [op for op in history.ops if not any(w.overlaps(op) for w in history.windows)]
    return [*rows, counted("outside faults", outside)]


async def check(
    pg: asyncpg.Pool,
    mongo: AsyncDatabase[dict[str, Any]],
    settings: Settings,
    coupon: str,
    history: History,
    claimed_by: list[str],
) -> list[str]:
    """The history's violations against the stores as they are now (every saga ended),
    the audit's findings among them."""
    facts = await read_facts(pg, mongo, coupon)
    found = violations(history.ops, facts, claimed_by)
    code, out, err = await coupon_saga(settings, "audit", "--coupon", coupon)
    if code != 0:
        found.append(f"coupon-saga audit exited {code}: {out[-500:]} {err[-500:]}")
    return found
