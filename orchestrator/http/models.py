"""Request and response models at the HTTP edge, exactly as docs/CONTRACT.md states them."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from sagas.errors import CouponNotFound

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


# The same rules as patterns, for the OpenAPI description (JSON Schema regex dialect).
# The validators above are what the service enforces and words its 400s with; a
# property test keeps the two in agreement, read by Python's `re` and by a JSON Schema
# validator. No `\s`: its meaning differs by dialect (ECMA-262's includes U+FEFF, which
# is not white space to Unicode or to str.strip). These are the characters str.strip
# removes that are not control characters already: Unicode's White_Space, spelled out.
_SPACES = r" \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_CONTROLS = r"\x00-\x1f\x7f-\x9f"
USER_ID_PATTERN = rf"^[^{_CONTROLS}]+$"
COUPON_NAME_PATTERN = rf"^[^{_SPACES}{_CONTROLS}/](?:[^{_CONTROLS}/]*[^{_SPACES}{_CONTROLS}/])?$"

UserId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=128,
        json_schema_extra={"pattern": USER_ID_PATTERN},
        description="1-128 characters, no control characters.",
        examples=["user_12345"],
    ),
    AfterValidator(_printable),
]
CouponName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=128,
        json_schema_extra={"pattern": COUPON_NAME_PATTERN},
        description="1-128 characters, no control characters, no '/', "
        "no leading or trailing white space. Case-sensitive.",
        examples=["PROMO_SUPER"],
    ),
    AfterValidator(_printable),
    AfterValidator(_coupon_name),
]
Amount = Annotated[
    int,
    Field(
        ge=0,
        le=1_000_000_000,
        description="Units of stock; 0 is a coupon sold out from the start.",
        examples=[100],
    ),
]

coupon_name_adapter: TypeAdapter[str] = TypeAdapter(CouponName)


def coupon_name_in_path(raw: str) -> str:
    """A coupon name from a URL path; one no coupon can have is simply not found."""
    try:
        return coupon_name_adapter.validate_python(raw)
    except ValidationError:
        raise CouponNotFound(raw) from None


class _Request(BaseModel):
    # Strict: a bool or a float is not an integer, a number or an object is not a string.
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class CreateCouponRequest(_Request):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"name": "PROMO_SUPER", "amount": 100}]}
    )

    name: CouponName
    amount: Amount


class ClaimRequest(_Request):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"user_id": "user_12345", "coupon_name": "PROMO_SUPER"}]}
    )

    user_id: UserId
    coupon_name: CouponName


class CouponResponse(BaseModel):
    name: str = Field(examples=["PROMO_SUPER"])
    amount: int = Field(ge=0, examples=[100])
    remaining_amount: int = Field(ge=0, examples=[99])
    claimed_by: list[str] = Field(
        description="Every user holding the coupon, oldest claim first, each once.",
        examples=[["user_12345"]],
    )


class ClaimResponse(BaseModel):
    user_id: str = Field(examples=["user_12345"])
    coupon_name: str = Field(examples=["PROMO_SUPER"])
    claimed_at: str = Field(
        description="RFC 3339, UTC, millisecond precision.",
        json_schema_extra={"format": "date-time"},
        examples=["2026-11-24T18:56:08.768Z"],
    )


class ErrorResponse(BaseModel):
    error: str = Field(description="A machine-readable code.", examples=["out_of_stock"])
    message: str = Field(
        description="One human sentence.", examples=["This coupon has no stock left."]
    )
