"""What /metrics holds for an operator: every counter from its first scrape, the admission
and sold-out memo metrics, the version, and a store's availability."""

from __future__ import annotations

from importlib import metadata

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.api import claim, create, metric
from tests.support.servers import gateway_process
from tests.support.settings import changed

REASONS = ("out_of_stock", "already_claimed", "coupon_not_found")


async def samples(http, base: str) -> dict[tuple[str, frozenset], float]:
    async with http.get(f"{base}/metrics") as response:
        text = await response.text()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def labels(**values: str) -> frozenset:
    return frozenset(values.items())


@pytest.fixture(scope="module")
def fresh_gateway(settings, service, tmp_path_factory):
    """A gateway that has served nothing yet; its sold-out memo keeps an entry for a
    minute, so the memo's answers do not depend on how fast this machine is."""
    log_path = tmp_path_factory.mktemp("fresh") / "gateway.log"
    fresh = changed(settings, {"sold_out_memo_seconds": 60.0})
    with gateway_process(fresh, log_path) as base:
        yield base


async def test_every_counter_has_a_sample_before_its_first_event(http, fresh_gateway):
    """So `increase()` sees the first parked saga after a restart."""
    found = await samples(http, fresh_gateway)
    for name in ("started", "completed", "compensated", "failed"):
        assert (f"saga_{name}_total", labels(saga="claim")) in found, name
    for reason in REASONS:
        assert ("saga_refused_total", labels(saga="claim", reason=reason)) in found
    for status in ("completed", "compensated", "compensating", "failed"):
        assert ("saga_recovered_total", labels(saga="claim", status=status)) in found
    for step in ("reserve", "record", "confirm", "undo reserve", "undo record"):
        assert ("saga_step_retries_total", labels(saga="claim", step=step)) in found
    assert found[("claim_admission_refused_total", labels())] == 0
    assert found[("claim_admission_waiting", labels())] == 0
    for answer in ("out_of_stock", "already_claimed"):
        assert found[("sold_out_memo_hits_total", labels(answer=answer))] == 0
    assert found[("sold_out_memo_renewals_total", labels())] == 0


async def test_the_version_and_the_stores_are_on_metrics(http, fresh_gateway):
    found = await samples(http, fresh_gateway)
    version = metadata.version("coupon-service")
    assert found[("coupon_service_build_info", labels(version=version))] == 1
    for store in ("postgresql", "mongodb", "redis"):
        assert found[("store_up", labels(store=store))] == 1


async def test_claims_answered_from_the_sold_out_memo_are_counted(http, fresh_gateway, name):
    await create(http, fresh_gateway, name, 1)
    assert (await claim(http, fresh_gateway, "winner", name))[0] == 200
    # Each worker learns the coupon is sold out from a saga of its own; then it answers
    # from memory. Two workers: a few claims are enough, a bound keeps it finite.
    for n in range(50):
        assert (await claim(http, fresh_gateway, f"late_{n}", name))[0] == 409
        if await metric(http, fresh_gateway, "sold_out_memo_hits_total", answer="out_of_stock"):
            break
    assert await metric(http, fresh_gateway, "sold_out_memo_hits_total", answer="out_of_stock")
    assert await metric(http, fresh_gateway, "sold_out_memo_renewals_total") >= 1
    refused = await metric(
        http, fresh_gateway, "saga_refused_total", saga="claim", reason="out_of_stock"
    )
    assert refused >= 1  # the claims that taught the memo ran a saga, which took nothing
