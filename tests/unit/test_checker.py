"""The history checker, fed hand-written histories: each kind of violation is caught,
and a history that keeps its promises has none."""

from __future__ import annotations

from tests.support.checker import availability, violations
from tests.support.invariants import CouponFacts
from tests.support.op_history import History, Op, Window


def ok(user: str, saga: str, at: float = 0.0) -> Op:
    return Op(user, "ok", at, at + 1, 200, "", saga)


def refused(user: str, error: str, saga: str = "", at: float = 0.0) -> Op:
    return Op(user, "ok", at, at + 1, 409, error, saga)


def unavailable(user: str, saga: str = "", at: float = 0.0) -> Op:
    return Op(user, "fail", at, at + 1, 503, "unavailable", saga)


def unknown(user: str, at: float = 0.0, status: int = 0) -> Op:
    return Op(user, "info", at, at + 1, status)


def facts(
    amount: int, claims: dict[str, str], released: dict[str, str] | None = None
) -> CouponFacts:
    """The stores after a sale whose sagas all ended: `claims` saga -> user."""
    holds = {saga: (user, "confirmed") for saga, user in claims.items()}
    holds |= {saga: (user, "released") for saga, user in (released or {}).items()}
    return CouponFacts(amount, amount - len(claims), holds, dict(claims))


def test_a_history_that_keeps_its_promises_has_no_violation() -> None:
    history = [
        ok("a", "s1"),
        refused("b", "out_of_stock", "s2"),
        refused("a", "already_claimed", "s3", at=5),
        unavailable("c"),
        unknown("d", status=504),
    ]
    stores = facts(2, {"s1": "a", "s4": "d"}, released={"s2": "b", "s3": "a"})
    assert violations(history, stores, ["a", "d"]) == []


def test_oversell_is_caught() -> None:
    stores = facts(1, {"s1": "a", "s2": "b"})
    found = violations([ok("a", "s1"), ok("b", "s2")], stores, ["a", "b"])
    assert any(v.startswith("1 oversold") for v in found), found


def test_a_user_with_two_claims_is_caught_even_when_both_were_unknown() -> None:
    history = [unknown("a"), unknown("a", at=3)]
    found = violations(history, facts(5, {"s1": "a", "s2": "a"}), ["a"])
    assert any(v.startswith("2 a claimed 2x") for v in found), found


def test_a_200_whose_claim_does_not_stand_is_caught() -> None:
    found = violations([ok("a", "s1")], facts(5, {}), [])
    assert any("no claim document" in v for v in found), found


def test_a_claim_no_operation_accounts_for_is_caught() -> None:
    found = violations([unavailable("a")], facts(5, {"s9": "a"}), ["a"])
    assert any("no answer accounts for" in v for v in found), found


def test_a_503_whose_saga_took_a_unit_is_caught() -> None:
    found = violations([unavailable("a", "s1")], facts(5, {"s1": "a"}), ["a"])
    assert any("took a unit" in v for v in found), found


def test_already_claimed_for_a_user_who_holds_nothing_is_caught() -> None:
    found = violations([refused("a", "already_claimed", "s1")], facts(5, {}), [])
    assert found == ["already_claimed for a, who holds nothing"]


def test_already_claimed_while_the_users_other_claim_was_in_flight_stands() -> None:
    history = [refused("a", "already_claimed", "s1"), unavailable("a", "s2")]
    stores = facts(5, {}, released={"s2": "a"})
    assert violations(history, stores, []) == []


def test_out_of_stock_while_units_were_always_free_is_caught() -> None:
    found = violations([refused("a", "out_of_stock", "s1")], facts(5, {}), [])
    assert found == ["out_of_stock for a, the stock never ran out"]


def test_a_500_is_caught() -> None:
    found = violations([Op("a", "info", 0, 1, 500, "internal")], facts(5, {}), [])
    assert any(v.startswith("judge") for v in found), found


def test_units_still_held_are_caught() -> None:
    stores = CouponFacts(5, 4, {"s1": ("a", "held")}, {})
    found = violations([unknown("a")], stores, [])
    assert any(v.startswith("4 held") for v in found), found


def test_availability_is_counted_in_and_outside_each_fault() -> None:
    history = History(
        ops=[
            ok("a", "s1", at=0),
            unavailable("b", at=10),
            ok("c", "s3", at=11),
            ok("d", "s4", at=30),
        ],
        windows=[Window("cut", 9, 20)],
    )
    rows = {row.name: (row.answered, row.requests) for row in availability(history)}
    assert rows == {"cut": (1, 2), "outside faults": (2, 2)}
