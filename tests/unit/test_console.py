"""The console's pure parts: its session and CSRF tokens, and how it draws a saga's steps."""

from __future__ import annotations

from pydantic import SecretStr

from orchestrator.console import access
from orchestrator.console.timeline import timeline
from sagas.claim import claim_saga
from sagas.records import Phase, SagaEvent

TOKEN = SecretStr("a-token")


def test_a_session_is_good_for_its_lifetime_and_for_its_token_only() -> None:
    session = access.new_session(TOKEN, now=1000.0)
    assert access.session_valid(TOKEN, session, now=1000.0 + access.SESSION_SECONDS - 1)
    assert not access.session_valid(TOKEN, session, now=1000.0 + access.SESSION_SECONDS)
    assert not access.session_valid(TOKEN, session, now=999.0)  # issued in the future
    assert not access.session_valid(SecretStr("rotated"), session, now=1000.0)
    issued, _, signature = session.partition(".")
    assert not access.session_valid(TOKEN, f"{int(issued) + 1}.{signature}", now=1001.0)
    assert not access.session_valid(TOKEN, "", now=1000.0)


def test_the_csrf_token_belongs_to_its_session() -> None:
    one, other = access.new_session(TOKEN, now=1.0), access.new_session(TOKEN, now=2.0)
    assert access.csrf_valid(TOKEN, one, access.csrf_token(TOKEN, one))
    assert not access.csrf_valid(TOKEN, other, access.csrf_token(TOKEN, one))
    assert not access.csrf_valid(TOKEN, one, "")


def test_steps_are_drawn_in_order_then_their_undos_with_their_own_events() -> None:
    definition = claim_saga(None, None)  # steps drawn, never run
    events = [
        SagaEvent(1.0, "reserve", Phase.STARTED),
        SagaEvent(1.1, "reserve", Phase.SUCCEEDED),
        SagaEvent(1.2, "record", Phase.STARTED),
        SagaEvent(1.3, "record", Phase.RETRYING, "mongodb is unavailable", tries=3),
        SagaEvent(1.4, "record", Phase.FAILED, "mongodb is unavailable"),
        SagaEvent(1.5, "record", Phase.COMPENSATING),
        SagaEvent(1.6, "undo record", Phase.RETRYING, "mongodb is unavailable"),
        SagaEvent(1.7, "record", Phase.COMPENSATED),
        SagaEvent(1.8, "reserve", Phase.COMPENSATING),
        SagaEvent(1.9, "reserve", Phase.COMPENSATED),
        SagaEvent(2.0, "reserve", Phase.FINISHED),
    ]
    drawn = timeline(definition, events)
    lanes = {lane.name: lane for lane in drawn.lanes}
    assert list(lanes) == ["reserve", "record", "confirm", "undo record", "undo reserve"]
    assert [lane.pivot for lane in drawn.lanes] == [False, True, False, False, False]
    assert (lanes["record"].state, lanes["record"].tries) == ("failed", 4)
    assert lanes["record"].errors == ["mongodb is unavailable"] * 2
    assert (lanes["undo record"].state, lanes["undo record"].tries) == ("compensated", 2)
    assert (lanes["confirm"].state, lanes["confirm"].first_at) == ("not started", None)
    assert [e.phase for e in drawn.saga_events] == [Phase.FINISHED]


def test_the_claim_path_passes_no_console_code() -> None:
    """The console adds routes under /console and nothing else: the same middlewares, and
    a claim resolves to its view without a console resource being looked at (aiohttp
    indexes resources by path prefix)."""
    from orchestrator.http import views
    from orchestrator.http.app import create_app
    from orchestrator.http.errors import error_middleware
    from orchestrator.http.limits import concurrency_limit_middleware
    from orchestrator.http.observe import observe_middleware
    from orchestrator.settings import Settings

    app = create_app(Settings(_env_file=None))
    assert list(app.middlewares) == [
        observe_middleware,
        concurrency_limit_middleware,
        error_middleware,
    ]
    (claim,) = [
        route
        for route in app.router.routes()
        if route.resource is not None and route.resource.canonical == "/api/coupons/claim"
    ]
    assert claim.handler is views.claim_coupon
    console = [
        r.resource.canonical for r in app.router.routes() if "console" in r.resource.canonical
    ]
    assert console and all(path.startswith("/console") for path in console)
