"""The console's door, over HTTP: off without the admin token, and every action behind a
session, a CSRF token and our own origin."""

from __future__ import annotations

import re
import uuid

import aiohttp
from pydantic import SecretStr

from tests.support.api import claim
from tests.support.servers import app_in_process
from tests.support.settings import changed

TOKEN = "guard-" + uuid.uuid4().hex


async def test_without_a_token_the_console_is_off_and_says_how_to_turn_it_on(settings) -> None:
    off = changed(settings, {"admin_token": None})
    async with app_in_process(off) as base, aiohttp.ClientSession() as http:
        for path in ("/console", "/console/live.json", "/console/login", "/console/sagas"):
            async with http.get(f"{base}{path}", allow_redirects=False) as response:
                assert response.status == 404, path
                assert "ADMIN_TOKEN" in await response.text()
                assert "default-src 'none'" in response.headers["Content-Security-Policy"]


async def test_actions_need_a_session_the_csrf_token_and_our_origin(settings, name) -> None:
    guarded = changed(settings, {"admin_token": SecretStr(TOKEN)})
    jar = aiohttp.CookieJar(unsafe=True)  # the gateway is 127.0.0.1
    async with app_in_process(guarded) as base, aiohttp.ClientSession(cookie_jar=jar) as http:
        async with http.post(
            f"{base}/api/coupons",
            json={"name": name, "amount": 1},
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as response:
            assert response.status == 201
        status, _ = await claim(http, base, "ann", name)
        assert status == 200
        saga_id = await _saga_of(http, base, name)
        resume = f"{base}/console/sagas/{saga_id}/resume"
        http.cookie_jar.clear()  # logged out

        async with http.post(resume, data={}, allow_redirects=False) as response:
            assert (response.status, response.headers["Location"]) == (303, "/console/login")
        async with http.post(f"{base}/console/login", data={"token": "wrong"}) as response:
            assert response.status == 401
        await _log_in(http, base)

        async with http.get(f"{base}/console/sagas/{saga_id}") as response:
            csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', await response.text())
        assert csrf is not None
        async with http.post(resume, data={"csrf": "0" * 64}) as response:
            assert response.status == 403
        evil = {"Origin": "http://evil.example"}
        async with http.post(resume, data={"csrf": csrf[1]}, headers=evil) as response:
            assert response.status == 403
        async with http.post(
            resume, data={"csrf": csrf[1]}, headers={"Origin": base}, allow_redirects=False
        ) as response:
            assert response.status == 303
            assert response.headers["Location"] == f"/console/sagas/{saga_id}?did=resume"


async def _log_in(http: aiohttp.ClientSession, base: str) -> None:
    async with http.post(
        f"{base}/console/login", data={"token": TOKEN}, allow_redirects=False
    ) as response:
        assert response.status == 303
        cookie = response.cookies["console_session"]
        assert cookie["httponly"] and cookie["samesite"] == "Strict"


async def _saga_of(http: aiohttp.ClientSession, base: str, coupon: str) -> str:
    await _log_in(http, base)
    async with http.get(f"{base}/console/sagas", params={"coupon": coupon}) as response:
        found = re.findall(r"/console/sagas/([0-9a-f-]{36})", await response.text())
    assert len(set(found)) == 1
    return found[0]
