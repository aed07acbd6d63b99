"""The console's pages over HTTP: paging through sagas as the replay tool reads them, and
the audit, whose run is the repair's dry run."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import aiohttp
import pytest
from pydantic import SecretStr

from tests.support.apart import saga_log_apart
from tests.support.api import claim, details
from tests.support.faulty_gateway import Fault
from tests.support.proxy import CuttableProxy, through
from tests.support.servers import app_in_process, gateway_process
from tests.support.settings import changed
from tests.support.waiting import eventually

TOKEN = "pages-" + uuid.uuid4().hex
SAGA_LINK = re.compile(r'class="saga-link" href="/console/sagas/([0-9a-f-]{36})"')


@asynccontextmanager
async def logged_in(settings) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    """A gateway with the console on, a saga log of its own, and a client logged in."""
    async with saga_log_apart(settings) as apart, console_client(apart.settings) as client:
        yield client


@asynccontextmanager
async def console_client(settings) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    guarded = changed(settings, {"admin_token": SecretStr(TOKEN)})
    jar = aiohttp.CookieJar(unsafe=True)  # the gateway is 127.0.0.1
    async with app_in_process(guarded) as base, aiohttp.ClientSession(cookie_jar=jar) as http:
        async with http.post(f"{base}/console/login", data={"token": TOKEN}) as response:
            assert response.status == 200  # the front page, after the redirect
        yield base, http


async def create(http: aiohttp.ClientSession, base: str, name: str, amount: int) -> None:
    async with http.post(
        f"{base}/api/coupons",
        json={"name": name, "amount": amount},
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as response:
        assert response.status == 201


async def test_sagas_are_paged_newest_first_to_the_last(settings, name) -> None:
    async with logged_in(settings) as (base, http):
        await create(http, base, name, 5)
        for user in ("ann", "ben", "cid"):
            assert (await claim(http, base, user, name))[0] == 200
        assert (await claim(http, base, "ann", name))[0] == 409  # refused: a saga too
        completed = f"{base}/console/sagas?coupon={name}&status=completed"

        async def all_completed() -> bool:  # answered at the pivot, confirmed just after
            async with http.get(completed) as response:
                return len(SAGA_LINK.findall(await response.text())) == 3

        await eventually(all_completed)
        seen: list[str] = []
        url: str | None = f"{completed}&limit=2"
        while url is not None:
            async with http.get(url) as response:
                assert response.status == 200
                page = await response.text()
            found = SAGA_LINK.findall(page)
            assert 1 <= len(found) <= 2
            seen += found
            older = re.search(r'<a rel="next" href="([^"]+)"', page)
            url = f"{base}{older[1].replace('&amp;', '&')}" if older else None
        assert len(seen) == len(set(seen)) == 3
        users = [await _user_of(http, base, saga_id) for saga_id in seen]
        assert users == ["cid", "ben", "ann"]  # newest first


async def _user_of(http: aiohttp.ClientSession, base: str, saga_id: str) -> str:
    async with http.get(f"{base}/console/sagas/{saga_id}") as response:
        page = await response.text()
    found = re.search(r'<dt>user</dt><dd><a href="[^"]+"><bdi class="said">([^<]*)</bdi>', page)
    assert found is not None
    return found[1]


async def test_the_audit_is_the_repairs_dry_run(settings, mongo, name) -> None:
    async with logged_in(settings) as (base, http):
        await create(http, base, name, 2)
        # A claim document no saga wrote and no unit backs, as an old bug might leave.
        await mongo.claims.insert_one(
            {
                "user_id": "planted",
                "coupon_name": name,
                "saga_id": str(uuid.uuid4()),
                "claimed_at": datetime.now(UTC),
            }
        )
        async with http.get(f"{base}/console/audit", params={"coupon": name, "run": "1"}) as r:
            found = await r.text()
        assert "orphan_claim" in found and "Repair" in found
        assert await mongo.claims.count_documents({"coupon_name": name}) == 1  # untouched
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', found)
        assert csrf is not None
        async with http.post(
            f"{base}/console/audit/repair",
            data={"csrf": csrf[1], "coupon": name},
            headers={"Origin": base},
        ) as response:
            assert response.status == 200
            assert "deleted the claim document" in await response.text()
        assert await mongo.claims.count_documents({"coupon_name": name}) == 0
        async with http.get(f"{base}/console/audit", params={"coupon": name, "run": "1"}) as r:
            assert "No drift." in await r.text()


async def test_the_front_page_shows_what_answers_while_postgresql_is_away(settings, name) -> None:
    proxy = CuttableProxy.for_url(settings.database_url)
    await proxy.start()
    try:
        async with logged_in(through(settings, database_url=proxy)) as (base, http):
            await create(http, base, name, 3)
            await proxy.cut()
            async with http.get(f"{base}/console") as response:
                assert response.status == 200
                page = await response.text()
            assert "Stores away" in page and "<strong>postgresql</strong>" in page
            assert 'id="parked-total">0<' in page  # Redis answered
            async with http.get(f"{base}/console/live.json") as response:
                reading = await response.json()
            assert list(reading["stores_away"]) == ["postgresql"]
            assert reading["parked"] == 0 and reading["coupons"] == []
    finally:
        await proxy.close()


async def test_a_stuck_saga_is_compensated_after_its_dry_run(settings, tmp_path, name) -> None:
    """Its gateway died right after reserve: the saga is stuck short of its pivot, and
    nobody recovers it (recovery runs hourly here) but the operator."""
    async with saga_log_apart(settings) as apart:
        nobody_recovers = changed(
            apart.settings, {"saga_lease_seconds": 11.0, "recovery_interval_seconds": 3600.0}
        )
        dies = Fault.kill_after("reserve")
        # The console's gateway first: a gateway recovers what is stuck when it starts.
        async with console_client(nobody_recovers) as (base, http):
            with gateway_process(nobody_recovers, tmp_path / "dies.log", 1, fault=dies) as dead:
                await create_open(http, dead, name, 5)
                with pytest.raises(aiohttp.ClientError):
                    await claim(http, dead, "dan", name)

            async def stuck() -> bool:
                return len(await apart.saga_log.stuck(None)) == 1

            await eventually(stuck)
            (saga_id,) = await apart.saga_log.stuck(None)
            async with http.get(f"{base}/console/sagas", params={"status": "stuck"}) as r:
                assert SAGA_LINK.findall(await r.text()) == [saga_id]
            async with http.get(f"{base}/console/sagas/{saga_id}/compensate") as r:
                plan = await r.text()
            assert "It would: compensate: undo what is done" in plan
            csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', plan)
            assert csrf is not None
            async with http.post(
                f"{base}/console/sagas/{saga_id}/compensate",
                data={"csrf": csrf[1]},
                headers={"Origin": base},
            ) as r:
                assert "compensate: the saga is now compensated" in await r.text()
            coupon = await details(http, base, name)
            assert (coupon["remaining_amount"], coupon["claimed_by"]) == (5, [])


async def create_open(http: aiohttp.ClientSession, base: str, name: str, amount: int) -> None:
    """On a gateway without the admin token."""
    async with http.post(f"{base}/api/coupons", json={"name": name, "amount": amount}) as r:
        assert r.status == 201
