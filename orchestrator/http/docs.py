"""/docs: the API description as a page to read, rendered by Swagger UI from /openapi.json.

Swagger UI's files come from a Python package (swagger-ui-bundle-v2) and are served by the
gateway itself, so the page needs no outside network: no CDN, and the validator badge
(which would send the description to an outside service) is turned off.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web
from swagger_ui_bundle import swagger_ui_path

from orchestrator.http.limits import expect_continue

ASSETS = "/docs/assets"

_PAGE = f"""<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <title>Coupon service API</title>
    <link rel="stylesheet" href="{ASSETS}/swagger-ui.css">
    <link rel="icon" type="image/png" href="{ASSETS}/favicon-32x32.png" sizes="32x32">
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="{ASSETS}/swagger-ui-bundle.js"></script>
    <script src="/docs/start.js"></script>
  </body>
</html>
"""

_START = """window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
  });
};
"""


async def page(request: web.Request) -> web.Response:
    return web.Response(text=_PAGE, content_type="text/html")


async def start(request: web.Request) -> web.Response:
    return web.Response(text=_START, content_type="text/javascript")


def setup_docs(app: web.Application) -> None:
    files = {path.name: path for path in Path(str(swagger_ui_path)).iterdir() if path.is_file()}

    async def asset(request: web.Request) -> web.FileResponse:
        """One of Swagger UI's files, by name; anything else is the usual JSON 404."""
        found = files.get(request.match_info["name"])
        if found is None:
            raise web.HTTPNotFound
        return web.FileResponse(found)

    for path, handler in [
        ("/docs", page),
        ("/docs/start.js", start),
        (f"{ASSETS}/{{name}}", asset),
    ]:
        app.router.add_get(path, handler, expect_handler=expect_continue)
