"""The console in a real browser: a sale seen live, a parked saga found and re-driven in
three clicks from the front page, and client-written values shown as text.

The gateway is the app factory served from this process (tests/support/servers.py), on a
PostgreSQL database and a saga log of the test's own: a test closes its database to park
a saga, and reads the whole log."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg
from playwright.async_api import Browser, Page, expect
from pydantic import SecretStr

from orchestrator.settings import Settings
from sagas.records import SagaStatus
from tests.support.apart import Apart, postgres_database_apart, saga_log_apart
from tests.support.api import claim, details
from tests.support.servers import app_in_process
from tests.support.settings import changed
from tests.support.waiting import eventually

TOKEN = "console-" + uuid.uuid4().hex
A_NUMBER = re.compile(r"^\d+\.\d$")  # a rate, once the live view has read twice


@dataclass(frozen=True)
class Gateway:
    base: str
    apart: Apart
    database_url: str  # the test's own database


@asynccontextmanager
async def console_gateway(
    settings: Settings, after_step: Callable[[str], None] | None = None
) -> AsyncIterator[Gateway]:
    async with postgres_database_apart(settings.database_url) as database_url:
        own = changed(settings, {"database_url": database_url})
        async with saga_log_apart(own) as apart:
            guarded = changed(apart.settings, {"admin_token": SecretStr(TOKEN)})
            async with app_in_process(guarded, after_step=after_step) as base:
                yield Gateway(base, apart, database_url)


async def create(http: aiohttp.ClientSession, base: str, name: str, amount: int) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    body = {"name": name, "amount": amount}
    async with http.post(f"{base}/api/coupons", json=body, headers=headers) as response:
        assert response.status == 201, await response.text()


async def logged_in(browser: Browser, base: str) -> Page:
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    await page.goto(f"{base}/console")
    await expect(page).to_have_url(f"{base}/console/login")
    await page.get_by_label("Admin token").fill(TOKEN)
    await page.get_by_role("button", name="Open the console").click()
    await expect(page).to_have_url(f"{base}/console")
    return page


def coupon_row(page: Page, name: str):
    return page.locator("#coupons tbody tr").filter(has_text=name)


async def test_a_sale_is_seen_live(http, settings, browser, screenshots: Path) -> None:
    name = f"LIVE_{uuid.uuid4().hex[:10]}"
    async with console_gateway(settings) as gateway:
        await create(http, gateway.base, name, 10)
        page = await logged_in(browser, gateway.base)
        row = coupon_row(page, name)
        await expect(row.locator('[data-field="remaining"]')).to_have_text("10")
        await expect(page.locator("#live-state")).to_contain_text("read at")
        claimed_before = int(await page.locator("#claimed-total").text_content() or "0")
        await page.evaluate("window.__sameDocument = true")

        users = [f"buyer-{i}-{uuid.uuid4().hex[:6]}" for i in range(7)]
        answers = await asyncio.gather(*(claim(http, gateway.base, u, name) for u in users))
        assert [status for status, _ in answers] == [200] * 7
        assert (await claim(http, gateway.base, users[0], name))[0] == 409

        # The page updates itself: same document, new numbers.
        await expect(row.locator('[data-field="remaining"]')).to_have_text("3")
        await expect(row.locator('[data-field="claims"]')).to_have_text("7")
        await expect(page.locator("#claimed-total")).to_have_text(str(claimed_before + 7))
        await expect(page.locator("#refused-already_claimed")).not_to_have_text("0")
        assert await page.evaluate("window.__sameDocument") is True
        await expect(page.locator("#claims-rate")).to_have_text(A_NUMBER)
        await page.screenshot(path=screenshots / "sale-live.png", full_page=True)
        await page.close()


class DatabaseDoor:
    """Closes the test's database to the service right after a claim's pivot, once armed:
    the saga's confirm then meets a database that refuses connections (not an outage, an
    operator's doing) and the engine parks it, as README's walkthrough does by hand."""

    def __init__(self, admin_url: str) -> None:
        self._admin_url = admin_url
        self.database = ""
        self.armed = False

    def after_step(self, step: str) -> None:
        if step != "record" or not self.armed:
            return
        self.armed = False
        # Synchronously, before the engine's next await sends the confirm: the event loop
        # waits for a loop of its own in a thread.
        with ThreadPoolExecutor(1) as thread:
            thread.submit(asyncio.run, self._allow(False)).result(timeout=60)

    async def reopen(self) -> None:
        await self._allow(True)

    async def _allow(self, allowed: bool) -> None:
        admin = await asyncpg.connect(self._admin_url)
        try:
            await admin.execute(
                f'ALTER DATABASE "{self.database}" ALLOW_CONNECTIONS {str(allowed).lower()}'
            )
            if not allowed:
                await admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                    self.database,
                )
        finally:
            await admin.close()


async def test_a_parked_saga_is_resumed_from_the_front_page_in_three_clicks(
    http, settings, browser, screenshots: Path
) -> None:
    name = f"PARK_{uuid.uuid4().hex[:10]}"
    user = f"bob-{uuid.uuid4().hex[:6]}"
    door = DatabaseDoor(settings.database_url)
    async with console_gateway(settings, after_step=door.after_step) as gateway:
        door.database = gateway.database_url.rsplit("/", 1)[1]
        await create(http, gateway.base, name, 5)
        door.armed = True
        status, _ = await claim(http, gateway.base, user, name)
        assert status == 200  # past the pivot: the claim stands
        saga_id = await parked_saga_of(gateway.apart, name)

        # The operator looks while the database is still closed: only Redis is needed.
        page = await logged_in(browser, gateway.base)
        await expect(page.locator(".away")).to_contain_text("postgresql")
        parked = page.locator("table.parked tbody tr").filter(has_text=saga_id)
        await expect(parked).to_contain_text("not currently accepting connections")
        await expect(page.locator("#claims-rate")).to_have_text(A_NUMBER)  # two readings
        await page.screenshot(path=screenshots / "parked-front-page.png", full_page=True)

        await parked.get_by_role("link", name=saga_id).click()  # 1
        await expect(page.locator("h1")).to_contain_text("failed")
        await expect(page.locator("#saga-error")).to_contain_text("accepting connections")
        await expect(page.locator("#fact-claim")).to_contain_text(user)
        await expect(page.locator("#fact-hold")).to_contain_text("unavailable")
        await page.screenshot(path=screenshots / "parked-saga.png", full_page=True)

        await page.get_by_role("link", name="Resume…").click()  # 2
        await expect(page.locator("#plan")).to_have_text("It would: drive forward: confirm")
        await door.reopen()  # the operator's fix, before confirming
        await page.get_by_role("button", name="Confirm resume").click()  # 3

        await expect(page.locator("p.done")).to_contain_text("resume: the saga is now completed")
        await expect(page.locator("#fact-hold")).to_contain_text("confirmed")
        await page.screenshot(path=screenshots / "resumed-saga.png", full_page=True)
        assert (await gateway.apart.saga_log.load(saga_id)).status is SagaStatus.COMPLETED

        await page.get_by_role("link", name="Sales", exact=True).click()
        row = coupon_row(page, name)
        for field, value in {"claims": "1", "held": "0", "confirmed": "1", "parked": "0"}.items():
            await expect(row.locator(f'[data-field="{field}"]')).to_have_text(value)
        assert (await details(http, gateway.base, name))["claimed_by"] == [user]
        await page.screenshot(path=screenshots / "after-resume-front-page.png", full_page=True)
        await page.close()


async def parked_saga_of(apart: Apart, coupon: str) -> str:
    found: list[str] = []

    async def parked() -> bool:
        failed = await apart.saga_log.find(SagaStatus.FAILED, None)
        found[:] = [r.saga_id for r in failed if r.payload["coupon_name"] == coupon]
        return bool(found)

    await eventually(parked)
    (saga_id,) = found
    return saga_id


# Coupon names cannot hold "/" (the API refuses it); user ids can.
XSS_COUPON = "XSS_\u202e<img src=x onerror=\"window.__xss='coupon'\">'\"&amp;"
XSS_USERS = [
    "</bdi></td><script>window.__xss='user'</script>",
    '"><svg onload="window.__xss=\'svg\'">',
    "\u202egnp.exe<b>bold</b>",
    "javascript:window.__xss='href'",
]


async def test_client_written_values_render_as_text(http, settings, browser, screenshots) -> None:
    coupon = f"{XSS_COUPON}_{uuid.uuid4().hex[:6]}"
    async with console_gateway(settings) as gateway:
        await create(http, gateway.base, coupon, 10)
        for user in XSS_USERS:
            assert (await claim(http, gateway.base, user, coupon))[0] == 200
        page = await logged_in(browser, gateway.base)
        dialogs: list[str] = []
        page.on("dialog", lambda dialog: dialogs.append(dialog.message))
        violations: list[str] = []
        page.on("console", lambda message: violations.append(message.text))

        row = coupon_row(page, coupon)
        await expect(row.locator("bdi")).to_have_text(coupon)
        await assert_inert(page)

        await row.get_by_role("link", name=coupon).click()  # the coupon's sagas
        for user in XSS_USERS:
            await expect(page.locator("bdi", has_text=user).first).to_have_text(user)
        await assert_inert(page)
        await page.screenshot(path=screenshots / "xss-sagas.png", full_page=True)

        await page.locator("a.saga-link").first.click()
        await expect(page.locator("dl.record bdi").first).to_have_text(coupon)
        await assert_inert(page)
        assert dialogs == []
        assert [v for v in violations if "Content Security Policy" in v] == []
        await page.close()


async def assert_inert(page: Page) -> None:
    """Nothing a client wrote became markup, and no script of theirs ran."""
    assert await page.evaluate("typeof window.__xss") == "undefined"
    assert await page.locator("img, svg, b").count() == 0
    scripts = await page.locator("script").evaluate_all("s => s.map(e => e.src)")
    assert [src.rsplit("/", 1)[1] for src in scripts] == ["console.js"]
