"""Pages from templates, every value escaped: Jinja2 with autoescaping on for every
template, values a client wrote (coupon names, user ids) wrapped in <bdi> so a
right-to-left mark in one cannot reorder the text around it."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from aiohttp import web
from markupsafe import Markup

from orchestrator.console import access
from orchestrator.http.keys import CONSOLE_TEMPLATES, SETTINGS
from sagas.records import ends_a_try
from sagas.timestamps import rfc3339, rfc3339_at


def saga_url(saga_id: str) -> str:
    return f"/console/sagas/{quote(saga_id, safe='')}"


def sagas_url(**filters: str | None) -> str:
    given = {key: value for key, value in filters.items() if value}
    return "/console/sagas" + (f"?{urlencode(given)}" if given else "")


def _said(value: object) -> Markup:
    return Markup('<bdi class="said">%s</bdi>') % str(value)


def _when(at: float | None) -> Markup:
    if at is None:
        return Markup("—")
    moment = rfc3339_at(at)
    return Markup('<time datetime="%s">%s</time>') % (moment, moment)


def _status(value: str) -> Markup:
    return Markup('<span class="status status-%s">%s</span>') % (value, value)


def _rfc3339(moment: datetime) -> str:
    return rfc3339(moment)


def templates() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("orchestrator.console", "templates"),
        autoescape=True,  # every template, whatever its name
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.globals.update(
        said=_said, when=_when, status=_status, saga_url=saga_url, sagas_url=sagas_url
    )
    environment.filters.update(moment=rfc3339_at, rfc3339=_rfc3339)
    environment.tests.update(a_try=ends_a_try)
    return environment


def csrf_of(request: web.Request) -> str:
    """The CSRF token of the request's session ("" without one: the login page)."""
    token = request.app[SETTINGS].admin_token
    session = request.cookies.get(access.COOKIE, "")
    if token is None or not session:
        return ""
    return access.csrf_token(token, session)


def see_other(location: str) -> web.Response:
    """A redirect after a form or to the login page. Returned, not raised: the error
    middleware answers every raised HTTP error in the API's JSON, headers and all."""
    response = web.Response(status=303, headers={"Location": location})
    response.headers.update(access.SECURITY_HEADERS)
    return response


def render(request: web.Request, name: str, *, status: int = 200, **values: Any) -> web.Response:
    values.setdefault("csrf", csrf_of(request))
    body = request.app[CONSOLE_TEMPLATES].get_template(name).render(**values)
    response = web.Response(text=body, status=status, content_type="text/html", charset="utf-8")
    response.headers.update(access.SECURITY_HEADERS)
    return response
