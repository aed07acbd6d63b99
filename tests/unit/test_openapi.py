"""The OpenAPI description covers every route the app serves, with the contract's codes."""

from __future__ import annotations

from orchestrator.http.app import create_app
from orchestrator.http.openapi import openapi_document
from orchestrator.settings import Settings


def served_operations() -> set[tuple[str, str]]:
    app = create_app(Settings(_env_file=None))
    return {
        (route.resource.canonical, route.method.lower())
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }


def test_every_route_is_described_and_nothing_else():
    """Except /docs and /console: pages for people, not part of the API."""
    document = openapi_document()
    described = {(path, method) for path, ops in document["paths"].items() for method in ops}
    api = {
        (path, method)
        for path, method in served_operations()
        if not path.startswith(("/docs", "/console"))
    }
    assert described == api
    assert document["openapi"].startswith("3.1")


def test_every_answer_names_its_request_and_every_claim_answer_its_saga():
    paths = openapi_document()["paths"]
    for path, operations in paths.items():
        for operation in operations.values():
            for status, response in operation["responses"].items():
                assert response["headers"]["X-Request-Id"]["required"], (path, status)
    claim = paths["/api/coupons/claim"]["post"]["responses"]
    assert all("X-Saga-Id" in response["headers"] for response in claim.values())
    assert claim["200"]["headers"]["X-Saga-Id"]["required"]


def test_creating_a_coupon_may_need_the_admin_token():
    document = openapi_document()
    (scheme_name,) = document["components"]["securitySchemes"]
    scheme = document["components"]["securitySchemes"][scheme_name]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    # The token when ADMIN_TOKEN is set, nothing when it is not.
    assert document["paths"]["/api/coupons"]["post"]["security"] == [{scheme_name: []}, {}]


def test_the_claim_lists_every_outcome_of_the_contract():
    responses = openapi_document()["paths"]["/api/coupons/claim"]["post"]["responses"]
    codes = {
        status: set(response["content"]["application/json"].get("examples", {}))
        for status, response in responses.items()
    }
    assert codes == {
        "200": set(),
        "400": {"invalid_request"},
        "404": {"coupon_not_found"},
        "408": {"request_timeout"},
        "409": {"already_claimed", "out_of_stock"},
        "413": {"payload_too_large"},
        "417": {"expectation_failed"},
        "503": {"unavailable", "unavailable_in_doubt"},
    }
    assert "Retry-After" in responses["503"]["headers"]


def test_request_schemas_carry_the_contract_rules():
    schemas = openapi_document()["components"]["schemas"]
    amount = schemas["CreateCouponRequest"]["properties"]["amount"]
    assert (amount["type"], amount["minimum"], amount["maximum"]) == ("integer", 0, 1_000_000_000)
    name = schemas["ClaimRequest"]["properties"]["coupon_name"]
    assert (name["minLength"], name["maxLength"]) == (1, 128)
    assert "pattern" in name
