"""The console's browser tier: Debian's chromium, headless, driven by Playwright for
Python (its own browser download cannot work here). Screenshots go to
test-output/console/ of the checkout (ignored by git)."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright

from tests.support.processes import command_name, descendants

# Debian's (scripts/install-deps installs it); CHROMIUM names another build of it. Google
# Chrome, which Ubuntu's hosted runners carry instead, drives the same way.
CHROMIUM = (
    os.environ.get("CHROMIUM")
    or shutil.which("chromium")
    or shutil.which("google-chrome")
    or "/usr/bin/chromium"
)


@pytest.fixture(scope="session")
def screenshots(pytestconfig: pytest.Config) -> Path:
    folder = pytestconfig.rootpath / "test-output" / "console"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def chromium() -> str:
    if not Path(CHROMIUM).exists():
        pytest.fail("no chromium: `apt-get install chromium` (scripts/install-deps does)")
    return CHROMIUM


@pytest.fixture(scope="session")
async def browser(chromium: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        # As root (CI, a container) chromium runs only without its sandbox.
        launched = await playwright.chromium.launch(
            executable_path=chromium, headless=True, args=["--no-sandbox"]
        )
        try:
            yield launched
        finally:
            await launched.close()
    left = [pid for pid in descendants(os.getpid()) if "chrom" in command_name(pid)]
    assert left == [], f"chromium processes left running: {left}"
