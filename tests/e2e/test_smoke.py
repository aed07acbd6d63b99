"""scripts/smoke, the attack a user runs against any deployment: it passes against the
real gateway, and it catches a server that breaks the rules."""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from devstack.servers import free_port
from tests.support.invariants import assert_invariants

SMOKE = Path(__file__).resolve().parents[2] / "scripts" / "smoke"


async def smoke(base_url: str) -> tuple[int, str]:
    """Run scripts/smoke as a user would, without blocking this test's event loop."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, SMOKE, base_url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await process.communicate()
    return process.returncode or 0, output.decode()


@pytest.fixture
async def says_yes_to_everyone() -> AsyncIterator[str]:
    """Not a store fake: a wrong server, answering 200 to every claim."""

    async def create(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response(
            {**body, "remaining_amount": body["amount"], "claimed_by": []}, status=201
        )

    async def claim(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({**body, "claimed_at": "2026-01-01T00:00:00Z"})

    async def details(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        return web.json_response(
            {"name": name, "amount": 5, "remaining_amount": 0, "claimed_by": []}
        )

    app = web.Application()
    app.router.add_post("/api/coupons", create)
    app.router.add_post("/api/coupons/claim", claim)
    app.router.add_get("/api/coupons/{name}", details)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_smoke_passes_against_the_gateway_and_the_stores_agree(gateway, pg, mongo):
    status, output = await smoke(gateway)

    assert status == 0, output
    assert f"smoke: ok: {gateway} keeps the rules" in output
    coupons = re.findall(r"(SMOKE_\w+): ", output)
    assert len(coupons) == 2, output
    for coupon in coupons:
        await assert_invariants(pg, mongo, coupon)


async def test_smoke_fails_against_a_server_that_gives_every_claim_a_unit(says_yes_to_everyone):
    status, output = await smoke(says_yes_to_everyone)

    assert status == 1, output
    expected = "expected 5 x 200, 45 x 409 out_of_stock, got 50 x 200"
    assert f"smoke: FAIL: flash sale: 50 claims for 5 units: {expected}" in output
    assert "smoke: FAIL: double dip: 10 claims for 5 units" in output
    assert "keeps the rules" not in output


async def test_smoke_fails_when_nothing_answers():
    status, output = await smoke(f"http://127.0.0.1:{free_port()}")

    assert status == 1
    assert "smoke: FAIL: flash sale: creating" in output
