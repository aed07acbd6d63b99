"""One claim, as README's curl lines make it: a new coupon of one unit, then a claim of it."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid


class ClaimRefused(Exception):
    """The gateway answered, but not with the 200 a first claim of a new coupon gets."""


def claim_one(base_url: str) -> None:
    name = f"FRESH_{uuid.uuid4().hex[:12]}"
    _post(f"{base_url}/api/coupons", {"name": name, "amount": 1}, expected=201)
    _post(f"{base_url}/api/coupons/claim", {"user_id": "user_fresh", "coupon_name": name}, 200)


def _post(url: str, body: dict[str, object], expected: int) -> None:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, answer = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, answer = error.code, error.read()
    if status != expected:
        raise ClaimRefused(f"POST {url}: {status} {answer.decode(errors='replace')}")
