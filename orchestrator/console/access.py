"""Who may use the console, and how its answers defend the browser.

The admin token opens it: an operator types it once, and gets a session cookie signed
with it (HMAC), good for SESSION_SECONDS on every worker, and void once the token
changes. Each form carries a CSRF token derived from the session, and every POST must
come from our own origin. No ADMIN_TOKEN: the console is off and says how to turn it on.
Every answer carries a strict Content-Security-Policy: scripts and styles from the
gateway's own files only, nothing inline, nothing from elsewhere.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import urlsplit

from aiohttp import web
from pydantic import SecretStr

COOKIE = "console_session"
SESSION_SECONDS = 12 * 3600

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # no-referrer would make Origin "null"
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def _sign(token: SecretStr, purpose: str, text: str) -> str:
    key = token.get_secret_value().encode()
    return hmac.new(key, f"{purpose}:{text}".encode(), hashlib.sha256).hexdigest()


def token_matches(token: SecretStr, given: str) -> bool:
    # Constant time: how much of a guess matched must not show in how long the answer takes.
    return hmac.compare_digest(given.encode(), token.get_secret_value().encode())


def new_session(token: SecretStr, now: float | None = None) -> str:
    issued = str(int(time.time() if now is None else now))
    return f"{issued}.{_sign(token, 'session', issued)}"


def session_valid(token: SecretStr, cookie: str, now: float | None = None) -> bool:
    issued, _, signature = cookie.partition(".")
    if not issued.isdigit() or not hmac.compare_digest(
        signature.encode(), _sign(token, "session", issued).encode()
    ):
        return False
    age = (time.time() if now is None else now) - int(issued)
    return 0 <= age < SESSION_SECONDS


def csrf_token(token: SecretStr, session: str) -> str:
    return _sign(token, "csrf", session)


def csrf_valid(token: SecretStr, session: str, given: str) -> bool:
    return hmac.compare_digest(given.encode(), csrf_token(token, session).encode())


def same_origin(request: web.Request) -> bool:
    """A POST from a page of ours: its Origin (or, lacking one, its Referer) names this
    host. Browsers send Origin on every POST; a request with neither is not a browser's
    form, and the CSRF token still has to match."""
    origin = request.headers.get("Origin") or request.headers.get("Referer")
    if origin is None:
        return True
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc == request.host


def set_session(response: web.StreamResponse, request: web.Request, session: str) -> None:
    response.set_cookie(
        COOKIE,
        session,
        max_age=SESSION_SECONDS,
        path="/console",
        httponly=True,
        samesite="Strict",
        secure=request.secure,
    )


def clear_session(response: web.StreamResponse) -> None:
    response.del_cookie(COOKIE, path="/console")
