"""One measured run of a scenario against a server that speaks the contract (the gateway,
or the single-store floor): set up, load with the CPU sampled around it, check."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp

from bench.cpu import Role, load_average, sample, usage
from bench.explain import Explainer, explain
from bench.load import LoadResult, fire
from bench.scenarios import Scenario, Shape

SETUP_CONCURRENCY = 64


@dataclass(frozen=True)
class Measured:
    load: LoadResult
    cpu_seconds: dict[str, float | None]  # by role, with "other" and "machine"
    roles: list[Role]
    problems: list[str]
    load_average: tuple[float, float, float]  # the machine's, as the load began
    explained: dict[str, Any] | None = None  # --explain: the counters per successful claim

    @property
    def claims(self) -> int:
        return self.load.statuses.get(200, 0)


async def api(base: str, method: str, path: str, body: Any = None) -> Any:
    async with aiohttp.ClientSession(base) as http, http.request(method, path, json=body) as r:
        if r.status >= 300:
            raise SystemExit(f"{method} {path} at {base}: {r.status} {await r.text()}")
        return await r.json()


async def measure(
    base: str,
    scenario: Scenario,
    shape: Shape,
    coupon: str,
    roles: list[Role],
    explainer: Explainer | None = None,
) -> Measured:
    """`explainer`: read the counters just outside the CPU samples (so reading them is
    not in the CPU figures) and give them per successful claim."""
    await api(base, "POST", "/api/coupons", {"name": coupon, "amount": shape.stock})
    problems = []
    if scenario.setup is not None:
        setup = await fire(
            base, scenario.setup(coupon, shape), concurrency=SETUP_CONCURRENCY, label="setup"
        )
        if set(setup.statuses) - {200}:
            problems.append(f"the setup's claims answered {dict(sorted(setup.statuses.items()))}")
    requests = scenario.requests(coupon, shape)
    busy = load_average()
    counted = await explainer.snapshot() if explainer else None
    before = sample(roles)
    load = await fire(
        base,
        requests,
        concurrency=shape.concurrency,
        label=scenario.name,
        keep_bodies=scenario.claims,
    )
    after = sample(roles)
    explained = None
    if explainer and counted:
        claims = load.statuses.get(200, 0) if scenario.claims else 0
        explained = explain(counted, await explainer.snapshot(), claims)
    if load.requests != len(requests):
        problems.append(f"{load.requests} answers to {len(requests)} requests")
    state = await api(base, "GET", f"/api/coupons/{coupon}")
    problems += scenario.check(shape, load, state)
    return Measured(load, usage(roles, before, after), roles, problems, busy, explained)
