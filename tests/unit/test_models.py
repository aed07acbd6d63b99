"""docs/CONTRACT.md's field rules, as the request models enforce them."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from orchestrator.http.models import ClaimRequest, CreateCouponRequest


@pytest.mark.parametrize("amount", [0, 1, 1_000_000_000])
def test_amount_accepts_integers_in_range(amount):
    assert CreateCouponRequest.model_validate({"name": "A", "amount": amount}).amount == amount


@pytest.mark.parametrize(
    "amount",
    [-1, 1_000_000_001, 2**63, -(2**63), 5.0, 5.5, True, False, "5", None, [5], {"$gt": 0}],
)
def test_amount_rejects_everything_else(amount):
    with pytest.raises(ValidationError):
        CreateCouponRequest.model_validate({"name": "A", "amount": amount})


@pytest.mark.parametrize(
    "name", ["A", "N" * 128, "with space", "ünï 券 🎟️", "a\u202eb", "quote'\";--", "in\u00a0side"]
)
def test_name_accepts(name):
    assert CreateCouponRequest.model_validate({"name": name, "amount": 1}).name == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "N" * 129,
        " lead",
        "trail ",
        "\ttab",
        "a/b",
        "a\x00b",
        "a\nb",
        "a\x7fb",
        "a\x9fb",
        "\ud800",
        "\u3000wide",
        5,
        None,
        {"$ne": None},
        ["A"],
    ],
)
def test_name_rejects(name):
    with pytest.raises(ValidationError):
        CreateCouponRequest.model_validate({"name": name, "amount": 1})


def test_unknown_fields_are_ignored():
    request = CreateCouponRequest.model_validate({"name": "A", "amount": 1, "extra": {"x": 1}})
    assert request.model_dump() == {"name": "A", "amount": 1}


@pytest.mark.parametrize("user_id", ["u", "u" * 128, " spaced ", "a/b", "ü 🎟️"])
def test_user_id_accepts(user_id):
    assert ClaimRequest.model_validate({"user_id": user_id, "coupon_name": "A"}).user_id == user_id


@pytest.mark.parametrize("user_id", ["", "u" * 129, "a\x01b", 12345, True, None, {"$ne": None}])
def test_user_id_rejects(user_id):
    with pytest.raises(ValidationError):
        ClaimRequest.model_validate({"user_id": user_id, "coupon_name": "A"})
