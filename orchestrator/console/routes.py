"""The console's routes, and the one gate every console request passes: on or off, a
session, a POST's origin and CSRF token, and the console's own answers to refusals and
stores away. Nothing here is on the API's routes: the claim path is not touched."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from orchestrator.console import access, actions, pages
from orchestrator.console.render import render, see_other, templates
from orchestrator.http.keys import CONSOLE_TEMPLATES, SETTINGS
from orchestrator.http.limits import expect_continue
from sagas.errors import StoreNotSetUp, StoreUnavailable
from sagas.operations import Refused

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_STATIC = {"console.css": "text/css", "console.js": "text/javascript"}
_SAGA = "/console/sagas/{saga_id}"


def _gate(handler: Handler, *, open_door: bool = False, json: bool = False) -> Handler:
    """`open_door`: needs no session (the login page). `json`: answers 401, not a redirect."""

    async def gated(request: web.Request) -> web.StreamResponse:
        token = request.app[SETTINGS].admin_token
        if token is None:
            return render(request, "off.html", status=404, title="The console is off")
        if request.method == "POST" and not access.same_origin(request):
            return _problem(request, 403, "Refused", "This form was not sent from the console.")
        session = request.cookies.get(access.COOKIE, "")
        if not open_door and not access.session_valid(token, session):
            if json:
                return _problem(request, 401, "Log in", "The session has ended; log in again.")
            return see_other("/console/login")
        if request.method == "POST" and not open_door:
            form = await request.post()
            if not access.csrf_valid(token, session, str(form.get("csrf", ""))):
                return _problem(request, 403, "Refused", "The form's CSRF token does not match.")
        try:
            return await handler(request)
        except Refused as refused:
            status = 404 if refused.kind == "not_found" else 409
            return _problem(request, status, "Not done", refused.message)
        except (StoreUnavailable, StoreNotSetUp) as error:
            return _problem(request, 503, "A store is away", str(error))

    return gated


def _problem(request: web.Request, status: int, title: str, message: str) -> web.Response:
    back = "/console" if status != 401 else "/console/login"
    return render(request, "problem.html", status=status, title=title, message=message, back=back)


async def login_page(request: web.Request) -> web.Response:
    return render(request, "login.html", title="Log in", wrong=False, csrf="")


async def log_in(request: web.Request) -> web.StreamResponse:
    token = request.app[SETTINGS].admin_token
    assert token is not None  # the gate answered already
    form = await request.post()
    if not access.token_matches(token, str(form.get("token", ""))):
        return render(request, "login.html", status=401, title="Log in", wrong=True, csrf="")
    answer = see_other("/console")
    access.set_session(answer, request, access.new_session(token))
    return answer


async def log_out(request: web.Request) -> web.StreamResponse:
    answer = see_other("/console/login")
    access.clear_session(answer)
    return answer


def _static_files() -> Handler:
    folder = Path(__file__).with_name("static")
    files = {name: (folder / name).read_bytes() for name in _STATIC}

    async def static(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in files:
            raise web.HTTPNotFound  # the API's JSON 404, like any unknown path
        response = web.Response(body=files[name], content_type=_STATIC[name], charset="utf-8")
        response.headers.update(access.SECURITY_HEADERS)
        return response

    return static


def setup_console(app: web.Application) -> None:
    app[CONSOLE_TEMPLATES] = templates()
    get, post = app.router.add_get, app.router.add_post
    routes: list[tuple[Callable[..., object], str, Handler]] = [
        (get, "/console", _gate(pages.front)),
        (get, "/console/live.json", _gate(pages.live, json=True)),
        (get, "/console/sagas", _gate(pages.sagas)),
        (get, _SAGA, _gate(pages.saga)),
        (get, _SAGA + "/{verb:resume|compensate}", _gate(actions.drive_plan)),
        (post, _SAGA + "/{verb:resume|compensate}", _gate(actions.drive)),
        (get, "/console/audit", _gate(actions.audit_page)),
        (post, "/console/audit/repair", _gate(actions.repair)),
        (get, "/console/login", _gate(login_page, open_door=True)),
        (post, "/console/login", _gate(log_in, open_door=True)),
        (post, "/console/logout", _gate(log_out)),
        (get, "/console/static/{name}", _gate(_static_files(), open_door=True)),
    ]
    for add, path, handler in routes:
        add(path, handler, expect_handler=expect_continue)
