"""/docs: a page to read the API by, served whole by the gateway (no outside network)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit


class Assets(HTMLParser):
    """Every URL the page loads: scripts, stylesheets, icons."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        for attribute in ("src", "href"):
            if found.get(attribute):
                self.urls.append(str(found[attribute]))


async def test_docs_and_everything_they_load_come_from_the_gateway(http, gateway):
    async with http.get(f"{gateway}/docs") as response:
        assert response.status == 200
        assert response.content_type == "text/html"
        html = await response.text()
    parser = Assets()
    parser.feed(html)
    assert len(parser.urls) >= 3  # the stylesheet, Swagger UI and the script that starts it

    gateway_host = urlsplit(gateway).netloc
    for url in parser.urls:
        absolute = urljoin(f"{gateway}/docs", url)
        assert urlsplit(absolute).netloc == gateway_host, url
        async with http.get(absolute) as response:
            assert response.status == 200, url
            assert len(await response.read()) > 0, url
    other_hosts = [u for u in re.findall(r"https?://[^\s\"'<>]+", html) if gateway_host not in u]
    assert other_hosts == []


async def test_the_docs_page_renders_the_gateways_own_description(http, gateway):
    async with http.get(f"{gateway}/docs/start.js") as response:
        script = await response.text()
    assert 'url: "/openapi.json"' in script
    assert "validatorUrl: null" in script  # no copy of the description sent out to validate
    async with http.get(f"{gateway}/docs/assets/no-such-file.js") as response:
        assert response.status == 404
        assert (await response.json())["error"] == "not_found"
