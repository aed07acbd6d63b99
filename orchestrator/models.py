"""Request and response models at the HTTP edge, exactly as CONTRACT.md states them."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter

# Control characters (C0, DEL, C1), and lone surrogates, which no store can encode.
_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def _printable(value: str) -> str:
    if _FORBIDDEN.search(value):
        raise ValueError("must not contain control characters")
    return value


def _coupon_name(value: str) -> str:
    if "/" in value:
        raise ValueError("must not contain '/'")
    if value != value.strip():
        raise ValueError("must not start or end with white space")
    return value


UserId = Annotated[str, Field(min_length=1, max_length=128), AfterValidator(_printable)]
CouponName = Annotated[UserId, AfterValidator(_coupon_name)]
Amount = Annotated[int, Field(ge=0, le=1_000_000_000)]

coupon_name_adapter: TypeAdapter[str] = TypeAdapter(CouponName)


class _Request(BaseModel):
    # Strict: a bool or a float is not an integer, a number or an object is not a string.
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class CreateCouponRequest(_Request):
    name: CouponName
    amount: Amount


class ClaimRequest(_Request):
    user_id: UserId
    coupon_name: CouponName


class CouponResponse(BaseModel):
    name: str
    amount: int
    remaining_amount: int
    claimed_by: list[str]


class ClaimResponse(BaseModel):
    user_id: str
    coupon_name: str
    claimed_at: str  # RFC 3339, UTC, millisecond precision


class ErrorResponse(BaseModel):
    error: str
    message: str
