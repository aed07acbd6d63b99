"""Every status code and body shape of docs/CONTRACT.md, over HTTP against the real gateway."""

from __future__ import annotations

import re
import uuid
from urllib.parse import quote

import aiohttp
import pytest
from yarl import URL

from tests.support.api import claim, create, details

JSON = "application/json; charset=utf-8"
RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


async def assert_error(response: aiohttp.ClientResponse, status: int, code: str) -> None:
    assert response.status == status
    assert response.headers["Content-Type"] == JSON
    body = await response.json()
    assert set(body) == {"error", "message"}
    assert body["error"] == code
    assert body["message"] and "Traceback" not in body["message"]


async def test_create_returns_the_coupon_with_its_location(http, gateway, name):
    async with http.post(f"{gateway}/api/coupons", json={"name": name, "amount": 100}) as response:
        assert response.status == 201
        assert response.headers["Content-Type"] == JSON
        assert response.headers["Location"] == f"/api/coupons/{name}"
        assert await response.json() == {
            "name": name,
            "amount": 100,
            "remaining_amount": 100,
            "claimed_by": [],
        }


async def test_create_without_content_type_parses_the_body_as_json(http, gateway, name):
    body = f'{{"name": "{name}", "amount": 3}}'.encode()
    async with http.post(
        f"{gateway}/api/coupons", data=body, skip_auto_headers=["Content-Type"]
    ) as response:
        assert "Content-Type" not in response.request_info.headers
        assert response.status == 201
    assert (await details(http, gateway, name))["amount"] == 3


async def test_amount_zero_is_sold_out_from_the_start(http, gateway, name):
    await create(http, gateway, name, 0)
    status, body = await claim(http, gateway, "user_1", name)
    assert (status, body["error"]) == (409, "out_of_stock")
    assert await details(http, gateway, name) == {
        "name": name,
        "amount": 0,
        "remaining_amount": 0,
        "claimed_by": [],
    }


async def test_duplicate_name_is_409_coupon_exists(http, gateway, name):
    await create(http, gateway, name, 5)
    async with http.post(f"{gateway}/api/coupons", json={"name": name, "amount": 9}) as response:
        await assert_error(response, 409, "coupon_exists")
    assert (await details(http, gateway, name))["amount"] == 5


async def test_names_are_case_sensitive(http, gateway, name):
    await create(http, gateway, name, 1)
    await create(http, gateway, name.lower(), 2)
    assert (await details(http, gateway, name.lower()))["amount"] == 2


async def test_claim_returns_the_claim_and_its_saga_id(http, gateway, name):
    await create(http, gateway, name, 2)
    async with http.post(
        f"{gateway}/api/coupons/claim", json={"user_id": "user_12345", "coupon_name": name}
    ) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == JSON
        uuid.UUID(response.headers["X-Saga-Id"])
        body = await response.json()
    assert set(body) == {"user_id", "coupon_name", "claimed_at"}
    assert (body["user_id"], body["coupon_name"]) == ("user_12345", name)
    assert RFC3339_UTC.match(body["claimed_at"]), body["claimed_at"]
    # Read-your-writes: the claim is visible as soon as its response has arrived.
    assert await details(http, gateway, name) == {
        "name": name,
        "amount": 2,
        "remaining_amount": 1,
        "claimed_by": ["user_12345"],
    }


async def test_claim_errors(http, gateway, name):
    await create(http, gateway, name, 1)
    assert (await claim(http, gateway, "a", name))[0] == 200
    for user, coupon, status, code in [
        ("a", name, 409, "already_claimed"),
        ("b", name, 409, "out_of_stock"),
        ("a", name, 409, "already_claimed"),  # the holder, also once the coupon is sold out
        ("c", name, 409, "out_of_stock"),
        ("a", name + "_missing", 404, "coupon_not_found"),
    ]:
        async with http.post(
            f"{gateway}/api/coupons/claim", json={"user_id": user, "coupon_name": coupon}
        ) as response:
            await assert_error(response, status, code)


async def test_same_user_may_claim_other_coupons(http, gateway, name):
    await create(http, gateway, name, 1)
    await create(http, gateway, name + "_b", 1)
    assert (await claim(http, gateway, "u", name))[0] == 200
    assert (await claim(http, gateway, "u", name + "_b"))[0] == 200


async def test_claimed_by_lists_oldest_claim_first(http, gateway, name):
    await create(http, gateway, name, 5)
    users = [f"user_{n}" for n in range(5)]
    for user in users:
        assert (await claim(http, gateway, user, name))[0] == 200
    assert (await details(http, gateway, name))["claimed_by"] == users


@pytest.mark.parametrize("suffix", [" with spaces", " çé ünïcødé 券", "+plus&amp"])
async def test_get_decodes_percent_encoded_names(http, gateway, name, suffix):
    full = name + suffix
    await create(http, gateway, full, 7)
    url = URL(f"{gateway}/api/coupons/{quote(full, safe='')}", encoded=True)
    async with http.get(url) as response:
        assert response.status == 200
        assert (await response.json())["name"] == full


async def test_unknown_coupon_is_404(http, gateway):
    async with http.get(f"{gateway}/api/coupons/NO_SUCH_{uuid.uuid4().hex}") as response:
        await assert_error(response, 404, "coupon_not_found")


@pytest.mark.parametrize("path", ["/", "/api", "/api/coupon", "/api/coupons/a/b", "/nope"])
async def test_unknown_path_is_404_not_found(http, gateway, path):
    async with http.get(f"{gateway}{path}") as response:
        await assert_error(response, 404, "not_found")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/coupons"),
        ("PUT", "/api/coupons"),
        ("DELETE", "/api/coupons"),
        ("PUT", "/api/coupons/claim"),
        ("DELETE", "/api/coupons/anything"),
        ("POST", "/api/coupons/anything"),
        ("PATCH", "/api/coupons/anything"),
    ],
)
async def test_wrong_method_is_405(http, gateway, method, path):
    async with http.request(method, f"{gateway}{path}", json={}) as response:
        await assert_error(response, 405, "method_not_allowed")
        assert response.headers["Allow"]


async def test_a_coupon_named_claim_is_readable(http, gateway):
    # GET /api/coupons/claim is a coupon's details; only POST goes to the claim endpoint.
    async with http.post(f"{gateway}/api/coupons", json={"name": "claim", "amount": 1}) as created:
        assert created.status in (201, 409)  # 409 when the stores outlive one test run
    assert (await details(http, gateway, "claim"))["name"] == "claim"


async def test_health(http, gateway):
    async with http.get(f"{gateway}/health") as response:
        assert response.status == 200
        assert await response.json() == {"status": "ok"}
