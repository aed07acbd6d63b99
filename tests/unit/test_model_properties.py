"""Property tests: whatever JSON a client sends, the request models accept it and it
round-trips, or reject it with a 400 message. Never an exception of another kind."""

from __future__ import annotations

import re
import sys
from typing import Any

import jsonschema_rs
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from orchestrator.http.errors import _validation_message
from orchestrator.http.models import (
    COUPON_NAME_PATTERN,
    USER_ID_PATTERN,
    ClaimRequest,
    CreateCouponRequest,
    coupon_name_adapter,
)

# Any JSON value orjson can write: the space of request bodies. (Wider integers arrive
# as floats from orjson.loads, and a float is never an amount.)
integers = st.integers(min_value=-(2**63), max_value=2**64 - 1)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | integers
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
# Every character some regex dialect or Unicode calls a space, and the invisible ones that
# look like it: ECMA-262's \s adds U+FEFF to Unicode's White_Space; U+180E was White_Space
# until Unicode 6.3; zero-width ones are White_Space in no dialect.
PYTHON_SPACES = [chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()]
SPACE_LIKE = sorted({*PYTHON_SPACES, "\ufeff", "\u180e", "\u200b", "\u200c", "\u200d", "\u2060"})
names = (
    st.text(min_size=0, max_size=140)
    | st.sampled_from(["PROMO_SUPER", " x", "a/b", "x\u0085", "\ufeffPROMO"])
    | st.builds(
        lambda space, text, where: [space + text, text + space, text + space + text][where],
        st.sampled_from(SPACE_LIKE),
        st.text(min_size=1, max_size=8),
        st.integers(0, 2),
    )
)


def bodies(fields: list[str]) -> st.SearchStrategy[Any]:
    """Objects with the model's fields set to anything, plus any JSON value at all."""
    field_values = st.one_of(json_values, names, integers)
    return st.fixed_dictionaries({}, optional=dict.fromkeys(fields, field_values)) | json_values


def accepted_or_400(model: type[BaseModel], body: Any) -> BaseModel | None:
    """What the view does with a parsed body: a model, or a 400 message (never a crash)."""
    parsed = orjson.loads(orjson.dumps(body))
    try:
        return model.model_validate(parsed)
    except ValidationError as error:
        message = _validation_message(error)
        assert message and message.endswith(".")
        return None


@settings(max_examples=500, derandomize=True)
@given(bodies(["name", "amount"]))
def test_create_requests_round_trip_or_are_rejected(body):
    request = accepted_or_400(CreateCouponRequest, body)
    if request is not None:
        assert isinstance(request, CreateCouponRequest)
        assert (request.name, request.amount) == (body["name"], body["amount"])
        assert type(body["amount"]) is int and 0 <= body["amount"] <= 1_000_000_000
        assert is_coupon_name(request.name)


@settings(max_examples=500, derandomize=True)
@given(bodies(["user_id", "coupon_name"]))
def test_claim_requests_round_trip_or_are_rejected(body):
    request = accepted_or_400(ClaimRequest, body)
    if request is not None:
        assert isinstance(request, ClaimRequest)
        assert (request.user_id, request.coupon_name) == (body["user_id"], body["coupon_name"])
        assert isinstance(body["user_id"], str) and 1 <= len(body["user_id"]) <= 128
        assert re.fullmatch(USER_ID_PATTERN, body["user_id"])


def is_coupon_name(value: str) -> bool:
    return 1 <= len(value) <= 128 and re.fullmatch(COUPON_NAME_PATTERN, value) is not None


# The name as the OpenAPI description states it, read in JSON Schema's own regex dialect.
documented_name = jsonschema_rs.validator_for(
    CreateCouponRequest.model_json_schema()["properties"]["name"]
)


def service_accepts(value: str) -> bool:
    try:
        coupon_name_adapter.validate_python(value)
    except ValidationError:
        return False
    return True


@settings(max_examples=2000, derandomize=True)
@given(names)
def test_the_documented_pattern_and_the_validators_agree(value):
    """The OpenAPI pattern describes exactly what the service accepts as a coupon name."""
    accepted = service_accepts(value)
    assert accepted == is_coupon_name(value)
    assert accepted == documented_name.is_valid(value)


@pytest.mark.parametrize("space", SPACE_LIKE, ids=lambda c: f"U+{ord(c):04X}")
def test_every_kind_of_space_is_judged_alike_by_the_pattern_and_the_service(space):
    for value in [f"{space}PROMO", f"PROMO{space}", f"PRO{space}MO", space]:
        accepted = service_accepts(value)
        assert accepted == is_coupon_name(value) == documented_name.is_valid(value), value
    # White space by Unicode (and str.strip) is refused at either end; U+FEFF and the
    # zero-width characters are not white space, so a name may start with them.
    assert service_accepts(f"{space}PROMO") == (not space.isspace())


@pytest.mark.parametrize("amount", [5.0, True, "5", None, -1, 1_000_000_001, 2**63, -(2**63)])
def test_amounts_the_contract_refuses(amount):
    assert accepted_or_400(CreateCouponRequest, {"name": "X", "amount": amount}) is None
