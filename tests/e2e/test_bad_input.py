"""Whatever a client sends, a clear 4xx and no store changed."""

from __future__ import annotations

import gzip
import json
import uuid
from dataclasses import dataclass
from urllib.parse import quote

import pytest

from tests.support.api import claim, create

CREATE, CLAIM = "/api/coupons", "/api/coupons/claim"


@dataclass(frozen=True)
class StoreSnapshot:
    """What a request that got through would have left in the stores."""

    stock: dict[str, int]  # coupon -> remaining_amount
    live_holds: set[str]  # saga ids of units held or confirmed
    claims: int
    redis_keys: set[str]

    def assert_nothing_added_since(self, before: StoreSnapshot) -> None:
        """No coupon, unit taken, claim or saga record more than `before`.

        Compared by "nothing added", not "all equal": other tests' sagas may still be
        finished or undone in the background meanwhile (a unit given back, a hold
        released, a record expiring), and that is not this request's doing.
        """
        assert self.stock.keys() == before.stock.keys()
        assert all(self.stock[name] >= before.stock[name] for name in before.stock)
        assert self.live_holds <= before.live_holds
        assert self.claims <= before.claims
        assert self.redis_keys <= before.redis_keys


async def store_snapshot(pg, mongo, redis) -> StoreSnapshot:
    rows = await pg.fetch("SELECT name, remaining_amount FROM coupons")
    holds = await pg.fetch("SELECT saga_id::text FROM holds WHERE status <> 'released'")
    return StoreSnapshot(
        stock={row["name"]: row["remaining_amount"] for row in rows},
        live_holds={row["saga_id"] for row in holds},
        claims=await mongo.claims.count_documents({}),
        redis_keys={key async for key in redis.scan_iter(count=1000)},
    )


def body(**fields: object) -> bytes:
    return json.dumps(fields).encode()


BAD_CREATES = {
    "malformed json": b'{"name": "x", "amount": ',
    "empty body": b"",
    "json array": b"[1, 2]",
    "json string": b'"PROMO"',
    "missing amount": body(name="BAD_A"),
    "missing name": body(amount=5),
    "amount as string": body(name="BAD_A", amount="5"),
    "amount as float": body(name="BAD_A", amount=5.5),
    "amount 5.0": b'{"name": "BAD_A", "amount": 5.0}',
    "amount true": body(name="BAD_A", amount=True),
    "amount null": body(name="BAD_A", amount=None),
    "amount -1": body(name="BAD_A", amount=-1),
    "amount 2**63": body(name="BAD_A", amount=2**63),
    "amount -2**63": body(name="BAD_A", amount=-(2**63)),
    "amount over a billion": body(name="BAD_A", amount=1_000_000_001),
    "huge integer": b'{"name": "BAD_A", "amount": 1' + b"0" * 400 + b"}",
    "NaN": b'{"name": "BAD_A", "amount": NaN}',
    "name blank": body(name="", amount=1),
    "name only spaces": body(name="   ", amount=1),
    "name leading space": body(name=" BAD", amount=1),
    "name trailing tab": body(name="BAD\t", amount=1),
    "name 129 chars": body(name="N" * 129, amount=1),
    "name with slash": body(name="a/b", amount=1),
    "name with NUL": body(name="a\u0000b", amount=1),
    "name with newline": body(name="a\nb", amount=1),
    "name with DEL": body(name="a\u007fb", amount=1),
    "name as number": body(name=5, amount=1),
    "name as object": body(name={"$ne": None}, amount=1),
    "name lone surrogate": b'{"name": "\\ud800", "amount": 1}',
    "invalid utf-8": b'{"name": "\xff\xfe", "amount": 1}',
    "10,000-deep nesting": b'{"name": "BAD_A", "amount": 1, "x": '
    + b"[" * 10_000
    + b"]" * 10_000
    + b"}",
    "40-deep in an ignored field": b'{"name": "BAD_A", "amount": 1, "x": '
    + b"[" * 40
    + b"]" * 40
    + b"}",
    "SQL in the name": body(name="x'; DROP TABLE coupons; --\u0000", amount=1),
}

BAD_CLAIMS = {
    "malformed json": b"{",
    "missing user": body(coupon_name="BAD_C"),
    "missing coupon": body(user_id="u"),
    "user as number": body(user_id=5, coupon_name="BAD_C"),
    "user as bool": body(user_id=True, coupon_name="BAD_C"),
    "user operator object": body(user_id={"$ne": None}, coupon_name="BAD_C"),
    "coupon operator object": body(user_id="u", coupon_name={"$gt": ""}),
    "user as list": body(user_id=["u"], coupon_name="BAD_C"),
    "user blank": body(user_id="", coupon_name="BAD_C"),
    "user 129 chars": body(user_id="u" * 129, coupon_name="BAD_C"),
    "user with control char": body(user_id="u\u0001", coupon_name="BAD_C"),
    "coupon 129 chars": body(user_id="u", coupon_name="C" * 129),
    "coupon blank": body(user_id="u", coupon_name=""),
    "coupon with slash": body(user_id="u", coupon_name="a/../b"),
    "user lone surrogate": b'{"user_id": "\\udc00", "coupon_name": "BAD_C"}',
    "10,000-deep nesting": b"[" * 10_000 + b"]" * 10_000,
}


@pytest.mark.parametrize("payload", BAD_CREATES.values(), ids=BAD_CREATES.keys())
async def test_bad_create_is_400_and_changes_nothing(http, gateway, pg, mongo, redis, payload):
    before = await store_snapshot(pg, mongo, redis)
    async with http.post(f"{gateway}{CREATE}", data=payload) as response:
        assert response.status == 400
        assert (await response.json())["error"] == "invalid_request"
    (await store_snapshot(pg, mongo, redis)).assert_nothing_added_since(before)


@pytest.mark.parametrize("payload", BAD_CLAIMS.values(), ids=BAD_CLAIMS.keys())
async def test_bad_claim_is_400_and_changes_nothing(http, gateway, pg, mongo, redis, payload):
    before = await store_snapshot(pg, mongo, redis)
    async with http.post(
        f"{gateway}{CLAIM}", data=payload, headers={"Content-Type": "application/json"}
    ) as response:
        assert response.status == 400
        assert (await response.json())["error"] == "invalid_request"
    (await store_snapshot(pg, mongo, redis)).assert_nothing_added_since(before)


async def test_body_over_64_kib_is_413_and_changes_nothing(http, gateway, pg, mongo, redis, name):
    before = await store_snapshot(pg, mongo, redis)
    padded = body(name=name, amount=1, padding="x" * (64 * 1024))
    async with http.post(f"{gateway}{CREATE}", data=padded) as response:
        assert response.status == 413
        assert (await response.json())["error"] == "payload_too_large"
    (await store_snapshot(pg, mongo, redis)).assert_nothing_added_since(before)


async def test_body_of_exactly_64_kib_is_read(http, gateway, name):
    start = body(name=name, amount=1, padding="")[:-2]
    payload = start + b"x" * (64 * 1024 - len(start) - 2) + b'"}'
    assert len(payload) == 64 * 1024
    async with http.post(f"{gateway}{CREATE}", data=payload) as response:
        assert response.status == 201


@pytest.mark.parametrize(
    "edge",
    [
        "emoji 🎟️ ok",
        "rtl \u202e mark",
        "quote ' and \" ; --",
        "percent %20 and ?query#hash",
        "$where",
        "in\u00a0side\u3000wide",
    ],
)
async def test_unusual_but_valid_names_work(http, gateway, edge):
    name = f"{edge} {uuid.uuid4().hex[:8]}"
    await create(http, gateway, name, 1)
    assert (await claim(http, gateway, "u1", name))[0] == 200
    assert (await claim(http, gateway, edge, name))[1]["error"] == "out_of_stock"


async def test_a_name_of_exactly_128_characters_works(http, gateway):
    name = ("N" * 96 + uuid.uuid4().hex)[:128]
    assert len(name) == 128
    await create(http, gateway, name, 1)
    assert (await claim(http, gateway, "u" * 128, name))[0] == 200


async def test_an_impossible_name_in_the_path_is_404(http, gateway):
    for path in ["a%00b", "%ff%fe", "N" * 129, "%20leading"]:
        async with http.get(f"{gateway}/api/coupons/{path}") as response:
            assert response.status == 404
            assert (await response.json())["error"] == "coupon_not_found"


async def test_duplicate_keys_take_the_last_value_as_every_json_parser_here_does(
    http, gateway, name
):
    dodged = f'{{"name": "{name}", "amount": 1, "name": "a/b"}}'.encode()
    async with http.post(f"{gateway}{CREATE}", data=dodged) as response:
        assert response.status == 400  # the slash name is the one judged
    plain = f'{{"name": "a/b", "amount": 7, "name": "{name}"}}'.encode()
    async with http.post(f"{gateway}{CREATE}", data=plain) as response:
        assert (response.status, (await response.json())["amount"]) == (201, 7)


@pytest.mark.parametrize(
    ("method", "path"),
    [("PUT", CREATE), ("DELETE", CLAIM), ("POST", "/api/coupons/x"), ("PATCH", "/health")],
)
async def test_wrong_methods_are_405_json_with_allow(http, gateway, method, path):
    async with http.request(method, f"{gateway}{path}") as response:
        assert response.status == 405
        assert response.headers["Allow"]
        assert (await response.json())["error"] == "method_not_allowed"


async def test_names_with_path_characters_round_trip_through_the_url(http, gateway):
    name = f"{{braces}} [brackets] %41 ? # {uuid.uuid4().hex[:8]}"
    await create(http, gateway, name, 2)
    async with http.get(f"{gateway}/api/coupons/{quote(name, safe='')}") as response:
        assert response.status == 200
        assert (await response.json())["name"] == name


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
@pytest.mark.parametrize("path", [CREATE, CLAIM])
async def test_a_body_that_is_not_encoded_as_it_says_is_400(
    http, gateway, pg, mongo, redis, name, path, encoding
):
    before = await store_snapshot(pg, mongo, redis)
    plain = body(name=name, amount=1, user_id="u", coupon_name=name)
    headers = {"Content-Encoding": encoding, "Content-Type": "application/json"}
    async with http.post(f"{gateway}{path}", data=plain, headers=headers) as response:
        assert response.status == 400
        assert (await response.json())["error"] == "invalid_request"
    (await store_snapshot(pg, mongo, redis)).assert_nothing_added_since(before)


async def test_a_gzip_body_is_read(http, gateway, name):
    packed = gzip.compress(body(name=name, amount=3))
    headers = {"Content-Encoding": "gzip"}
    async with http.post(f"{gateway}{CREATE}", data=packed, headers=headers) as response:
        assert response.status == 201
        assert (await response.json())["amount"] == 3
