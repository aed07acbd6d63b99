"""The one error table: looked up by class, then by the class's bases."""

from __future__ import annotations

from aiohttp import web

from orchestrator.http.errors import ERRORS, answer_for, answer_for_status
from sagas.errors import CouponNotFound, StoreUnavailable


class _SomeStoreTrouble(StoreUnavailable):
    pass


def test_a_subclass_answers_like_its_nearest_listed_base() -> None:
    answer = answer_for(_SomeStoreTrouble("redis"))
    assert (answer.status, answer.code) == (503, "unavailable")
    assert answer.headers["Retry-After"] == "1"


def test_an_unlisted_error_is_an_internal_error() -> None:
    answer = answer_for(KeyError("x"))
    assert (answer.status, answer.code) == (500, "internal")


def test_a_domain_error_answers_with_its_entry() -> None:
    assert answer_for(CouponNotFound("x")) == ERRORS[CouponNotFound]


def test_an_http_status_answers_like_its_exception_class() -> None:
    assert answer_for_status(413) == ERRORS[web.HTTPRequestEntityTooLarge]
    assert (answer_for_status(431).status, answer_for_status(431).code) == (431, "internal")
