"""The scenarios: what each sends, and the correctness each checks when it is over."""

from __future__ import annotations

import random
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from bench.load import LoadResult, Request


@dataclass(frozen=True)
class Shape:
    requests: int
    users: int
    stock: int
    concurrency: int


@dataclass(frozen=True)
class Scenario:
    name: str
    describe: str
    default: Shape
    requests: Callable[[str, Shape], list[Request]]
    check: Callable[[Shape, LoadResult, dict[str, Any]], list[str]]
    claims: bool = True  # whether its requests are claims (read: GETs of one coupon)
    # Made before the measured load, and not measured: the claims it needs in place.
    setup: Callable[[str, Shape], list[Request]] | None = None


def _claim(user: str, coupon: str) -> Request:
    return "POST", "/api/coupons/claim", {"user_id": user, "coupon_name": coupon}


def _flash_sale(coupon: str, shape: Shape) -> list[Request]:
    users = [f"user_{n % shape.users}" for n in range(shape.requests)]
    random.Random(1).shuffle(users)
    return [_claim(user, coupon) for user in users]


def _double_dip(coupon: str, shape: Shape) -> list[Request]:
    """Exactly `requests` claims, the tries of one user side by side: each user tries
    requests/users times, the first requests % users users once more."""
    tries, more = divmod(shape.requests, shape.users)
    return [
        _claim(f"user_{n}", coupon) for n in range(shape.users) for _ in range(tries + (n < more))
    ]


def _holders(coupon: str, shape: Shape) -> list[Request]:
    """One claim per user: after them, every user holds the coupon."""
    if shape.stock < shape.users:
        raise SystemExit(f"duplicates needs --stock >= --users ({shape.stock} < {shape.users})")
    return [_claim(f"user_{n}", coupon) for n in range(shape.users)]


def _duplicates(coupon: str, shape: Shape) -> list[Request]:
    """Repeat claims of the holders, cycling over them: about
    concurrency/users of each user's repeats in flight at once."""
    return [_claim(f"user_{n % shape.users}", coupon) for n in range(shape.requests)]


def _claimants(coupon: str, shape: Shape) -> list[Request]:
    return [_claim(f"u{n}", coupon) for n in range(shape.stock)]


def _read(coupon: str, shape: Shape) -> list[Request]:
    return [("GET", f"/api/coupons/{coupon}", None)] * shape.requests


def coupon_name(scenario: str) -> str:
    return f"bench-{scenario}-{uuid.uuid4().hex[:8]}"


def check_read(shape: Shape, load: LoadResult, coupon: dict[str, Any]) -> list[str]:
    """Correctness after a read scenario: every read answered 200, and the coupon holds
    exactly the claimants made before the reads (each once, stock conserved)."""
    problems = []
    if set(load.statuses) != {200}:
        problems.append(f"reads answered {dict(sorted(load.statuses.items()))}")
    claimed_by = coupon["claimed_by"]
    if len(claimed_by) != shape.stock:
        problems.append(f"{len(claimed_by)} claimants, expected {shape.stock}")
    return [*problems, *_held_once_and_conserved(coupon)]


def _error_code(body: bytes) -> str | None:
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return answer.get("error") if isinstance(answer, dict) else None


def check_duplicates(shape: Shape, load: LoadResult, coupon: dict[str, Any]) -> list[str]:
    """Correctness after `duplicates`: every repeat answered 409 already_claimed, and the
    coupon's claimants exactly the holders made first, each once, stock conserved."""
    problems = []
    codes = Counter((status, _error_code(body)) for status, body in load.bodies)
    if set(codes) != {(409, "already_claimed")}:
        problems.append(f"repeat claims answered {dict(sorted(codes.items(), key=str))}")
    claimed_by = coupon["claimed_by"]
    if sorted(claimed_by) != sorted(f"user_{n}" for n in range(shape.users)):
        problems.append(f"{len(claimed_by)} claimants, not the {shape.users} holders")
    return [*problems, *_held_once_and_conserved(coupon)]


def check(shape: Shape, load: LoadResult, coupon: dict[str, Any]) -> list[str]:
    """Correctness after a claim scenario: exactly the right winners, none twice, conserved."""
    problems = []
    claimed_by = coupon["claimed_by"]
    expected = min(shape.stock, shape.users)
    if len(claimed_by) != expected:
        problems.append(f"{len(claimed_by)} winners, expected {expected}")
    problems += _held_once_and_conserved(coupon)
    winners = {orjson.loads(body)["user_id"] for status, body in load.bodies if status == 200}
    if winners != set(claimed_by):
        problems.append("the 200s the clients saw are not the coupon's claimants")
    if load.statuses.get(200, 0) != len(claimed_by):
        problems.append(f"{load.statuses.get(200, 0)} answers of 200 for {len(claimed_by)} claims")
    unexpected = set(load.statuses) - {200, 409}
    if unexpected:
        problems.append(f"unexpected statuses {sorted(unexpected)}")
    return problems


SCENARIOS = {
    scenario.name: scenario
    for scenario in [
        Scenario(
            "flash-sale",
            "N claims from U users for S units at concurrency C",
            Shape(20_000, 20_000, 1_000, 200),
            _flash_sale,
            check,
        ),
        Scenario(
            "claim-rate",
            "ample stock, every request a distinct user: the success path",
            Shape(10_000, 10_000, 10_000, 32),
            _flash_sale,
            check,
        ),
        Scenario(
            "sold-out",
            "a coupon with 0 units: the rejection path",
            Shape(20_000, 20_000, 0, 200),
            _flash_sale,
            check,
        ),
        Scenario(
            "double-dip",
            "many concurrent duplicates per user",
            Shape(10_000, 1_000, 500, 200),
            _double_dip,
            check,
        ),
        # Stock above the users, so every answer has one right code: already_claimed.
        Scenario(
            "duplicates",
            "repeat claims by U users who already hold the coupon",
            Shape(20_000, 100, 1_000, 200),
            _duplicates,
            check_duplicates,
            setup=_holders,
        ),
        # 4 reads at a time: at 64, each read of 10,000 claimants on FerretDB ran past
        # STORE_TIMEOUT_SECONDS and got 503 (docs/PERFORMANCE.md).
        Scenario(
            "read",
            "GET of a coupon with S claimants; first makes the S claims (by S users)",
            Shape(100, 10_000, 10_000, 4),
            _read,
            check_read,
            claims=False,
            setup=_claimants,
        ),
    ]
}


def _held_once_and_conserved(coupon: dict[str, Any]) -> list[str]:
    """What every scenario's coupon must show: nobody twice, and stock conserved."""
    claimed_by = coupon["claimed_by"]
    problems = []
    if len(set(claimed_by)) != len(claimed_by):
        problems.append("a user holds the coupon twice")
    if coupon["remaining_amount"] + len(claimed_by) != coupon["amount"]:
        problems.append("remaining_amount + claimants != amount")
    return problems
