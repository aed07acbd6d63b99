"""The report of a run: one dict (printed as JSON, or as a table), every figure that was
not measured left None and named in `not_measured` with the reason."""

from __future__ import annotations

from typing import Any

from bench.load import LoadResult
from bench.measure import Measured
from bench.scenarios import Scenario, Shape

STACK_ROLES = ("gateway", "mongodb", "postgresql", "redis")


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def performance(scenario: Scenario, run: Measured) -> dict[str, Any]:
    load = run.load
    # A read scenario's 200s are reads, not claims.
    claims = run.claims if scenario.claims else 0
    percentiles = {f"p{int(f * 100)}": _ms(load.percentile(f)) for f in (0.5, 0.9, 0.99)}
    return {
        "requests": load.requests,
        "seconds": round(load.seconds, 3),
        "requests_per_second": round(load.per_second),
        "successful_claims_per_second": round(claims / load.seconds) if load.seconds else 0,
        "latency_ms": {**percentiles, "max": _ms(max(load.latencies, default=0))},
        "statuses": dict(sorted(load.statuses.items())),
        "cpu": cpu(run, claims),
    }


def cpu(run: Measured, claims: int) -> dict[str, Any]:
    """CPU seconds by role over the load, and per request and per successful claim:
    `stack` is the service's processes (gateway and stores), the load generator and
    "other" (the rest of the machine) apart, `machine` all of it."""
    seconds = dict(run.cpu_seconds)
    found = [seconds[name] for name in STACK_ROLES if seconds.get(name) is not None]
    seconds["stack"] = sum(value for value in found if value is not None)

    def per(count: int) -> dict[str, float | None] | None:
        if not count:
            return None
        return {k: None if v is None else round(v * 1000 / count, 3) for k, v in seconds.items()}

    return {
        "seconds": {k: None if v is None else round(v, 3) for k, v in seconds.items()},
        "ms_per_request": per(run.load.requests),
        "ms_per_successful_claim": per(claims),
        "roles": {role.name: role.found for role in run.roles},
        "load_average_before": list(run.load_average),
    }


def _ratio(ours: float | None, theirs: float | None) -> float | None:
    return round(ours / theirs, 3) if ours is not None and theirs else None


def build(
    scenario: Scenario,
    shape: Shape,
    ours: Measured,
    hot_row: float | None,
    hold_tx: float | None,
    bare: float,
    floor: LoadResult | None,
    single: Measured | None,
    rss: list[float] | None,
) -> dict[str, Any]:
    mine = performance(scenario, ours)
    theirs = performance(scenario, single) if single else None
    floor_p99 = floor.percentile(0.99) if floor else None
    p99 = mine["latency_ms"]["p99"]
    claims_per_second = mine["successful_claims_per_second"]

    def cpu_per_claim(report: dict[str, Any] | None) -> float | None:
        per_claim = report["cpu"]["ms_per_successful_claim"] if report else None
        return per_claim["stack"] if per_claim else None

    return {
        "scenario": scenario.name,
        "shape": vars(shape),
        **mine,
        "ceilings": {
            "hot_row_tx_per_second": round(hot_row) if hot_row else None,
            "hold_tx_per_second": round(hold_tx) if hold_tx else None,
            "bare_gateway_requests_per_second": round(bare),
            "floor_p99_ms": _ms(floor_p99) if floor_p99 else None,
        },
        "single_store": None
        if single is None or theirs is None
        else {**theirs, "correct": not single.problems, "problems": single.problems},
        "ratios": {
            "claims_per_second_to_hot_row": _ratio(claims_per_second, hot_row)
            if scenario.claims
            else None,
            "claims_per_second_to_hold_tx": _ratio(claims_per_second, hold_tx),
            "requests_per_second_to_bare_gateway": _ratio(ours.load.per_second, bare),
            "p99_to_floor_p99": _ratio(ours.load.percentile(0.99), floor_p99),
            "requests_per_second_to_single_store": _ratio(
                ours.load.per_second, single.load.per_second if single else None
            ),
            "claims_per_second_to_single_store": _ratio(
                claims_per_second if claims_per_second else None,
                theirs["successful_claims_per_second"] if theirs else None,
            ),
            "p99_to_single_store_p99": _ratio(p99, theirs["latency_ms"]["p99"] if theirs else None),
            "cpu_per_claim_to_single_store": _ratio(cpu_per_claim(mine), cpu_per_claim(theirs)),
        },
        "worker_rss_mib": rss,
        "explain": ours.explained,
        "correct": not ours.problems,
        "problems": ours.problems,
    }


def not_measured(
    scenario: Scenario,
    report: dict[str, Any],
    gateway_started: bool,
    database_url: str | None,
    redis_url: str | None,
) -> dict[str, str]:
    """Why each figure left out (None) was not measured, by the figure's name."""
    reasons = {}
    if not gateway_started:
        reasons["worker_rss_mib"] = "gateway not started by bench"
    if not database_url:
        reasons["hot_row_tx_per_second"] = "no --database-url"
    if not scenario.claims:
        reasons["claims_per_second_to_hot_row"] = "a read scenario makes no claims"
    elif not database_url:
        reasons["claims_per_second_to_hot_row"] = "no --database-url"
    hold_tx = (
        "claim-rate only"
        if scenario.name != "claim-rate"
        else None
        if database_url
        else "no --database-url"
    )
    if hold_tx:
        reasons["hold_tx_per_second"] = reasons["claims_per_second_to_hold_tx"] = hold_tx
    if scenario.name != "flash-sale":
        reasons["floor_p99_ms"] = reasons["p99_to_floor_p99"] = "flash-sale only"
    elif not (database_url and redis_url):
        reasons["floor_p99_ms"] = reasons["p99_to_floor_p99"] = (
            "needs --database-url and --redis-url"
        )
    single = (
        "a read scenario makes no claims"
        if not scenario.claims
        else None
        if database_url
        else "no --database-url"
    )
    if single:
        for name in ("single_store", "requests_per_second_to_single_store"):
            reasons[name] = single
    if single or not report["successful_claims_per_second"]:
        reasons["claims_per_second_to_single_store"] = single or "no successful claims"
        reasons["cpu_per_claim_to_single_store"] = single or "no successful claims"
    if single:
        reasons["p99_to_single_store_p99"] = single
    if report["explain"] is None:
        reasons["explain"] = "no --explain"
    if report["cpu"]["ms_per_successful_claim"] is None:
        reasons["cpu_ms_per_successful_claim"] = "no successful claims"
    return reasons


def _cpu_line(per: dict[str, float | None] | None, roles: dict[str, str]) -> str | None:
    """`stack 2.8 (gateway 1.6, ...); load_generator 0.5; other 0.3; machine 3.6`."""
    if per is None:
        return None

    def part(name: str) -> str:
        value = per.get(name)
        return f"{name} {value}" if value is not None else f"{name} {roles[name]}"

    stack = ", ".join(part(name) for name in STACK_ROLES)
    rest = "; ".join(part(name) for name in ("load_generator", "other", "machine"))
    return f"stack {per['stack']} ({stack}); {rest}"


def print_table(report: dict[str, Any]) -> None:
    ceilings, ratios, single = report["ceilings"], report["ratios"], report["single_store"]
    correct = "yes" if report["correct"] else "NO: " + "; ".join(report["problems"])
    cpu, roles = report["cpu"], report["cpu"]["roles"]
    # (label, value, the figure's name where it may be left unmeasured)
    rows: list[tuple[str, Any, str]] = [
        ("scenario", report["scenario"], ""),
        ("shape", ", ".join(f"{k}={v}" for k, v in report["shape"].items()), ""),
        ("requests (all answered)", report["requests"], ""),
        ("requests/s", report["requests_per_second"], ""),
        ("successful claims/s", report["successful_claims_per_second"], ""),
        ("latency ms", _pairs(report["latency_ms"]), ""),
        ("statuses", _pairs(report["statuses"], ": "), ""),
        (
            "CPU ms/claim",
            _cpu_line(cpu["ms_per_successful_claim"], roles),
            "cpu_ms_per_successful_claim",
        ),
        ("CPU ms/request", _cpu_line(cpu["ms_per_request"], roles), ""),
        ("machine load average (1/5/15 min)", _slashed(cpu["load_average_before"]), ""),
        ("hot-row tx/s (ceiling)", ceilings["hot_row_tx_per_second"], "hot_row_tx_per_second"),
        ("bare /health req/s", ceilings["bare_gateway_requests_per_second"], ""),
        (
            "claims/s ÷ hot row",
            ratios["claims_per_second_to_hot_row"],
            "claims_per_second_to_hot_row",
        ),
        ("hold-insert tx/s (ceiling)", ceilings["hold_tx_per_second"], "hold_tx_per_second"),
        (
            "claims/s ÷ hold-insert tx",
            ratios["claims_per_second_to_hold_tx"],
            "claims_per_second_to_hold_tx",
        ),
        ("req/s ÷ bare gateway", ratios["requests_per_second_to_bare_gateway"], ""),
        ("floor p99 ms (UPDATE+SET)", ceilings["floor_p99_ms"], "floor_p99_ms"),
        ("p99 ÷ floor p99", ratios["p99_to_floor_p99"], "p99_to_floor_p99"),
    ]
    if single is None:
        rows.append(("single-store floor", None, "single_store"))
    else:
        single_correct = "yes" if single["correct"] else "NO: " + "; ".join(single["problems"])
        single_cpu = single["cpu"]
        rows += [
            ("single-store req/s", single["requests_per_second"], ""),
            ("single-store claims/s", single["successful_claims_per_second"], ""),
            ("single-store latency ms", _pairs(single["latency_ms"]), ""),
            ("single-store statuses", _pairs(single["statuses"], ": "), ""),
            (
                "single-store CPU ms/claim",
                _cpu_line(single_cpu["ms_per_successful_claim"], single_cpu["roles"]),
                "",
            ),
            ("single-store load average", _slashed(single_cpu["load_average_before"]), ""),
            ("single-store correct", single_correct, ""),
        ]
    rows += [
        (
            "req/s ÷ single-store",
            ratios["requests_per_second_to_single_store"],
            "requests_per_second_to_single_store",
        ),
        (
            "claims/s ÷ single-store",
            ratios["claims_per_second_to_single_store"],
            "claims_per_second_to_single_store",
        ),
        ("p99 ÷ single-store p99", ratios["p99_to_single_store_p99"], "p99_to_single_store_p99"),
        (
            "CPU/claim ÷ single-store",
            ratios["cpu_per_claim_to_single_store"],
            "cpu_per_claim_to_single_store",
        ),
        ("worker RSS MiB", report["worker_rss_mib"], "worker_rss_mib"),
        ("correct", correct, ""),
    ]
    width = max(len(label) for label, _, _ in rows)
    for label, value, name in rows:
        if name and value is None:
            value = f"not measured ({report['not_measured'].get(name, 'not available')})"
        print(f"{label:<{width}}  {value}")
    if report["explain"] is not None:
        print_explained(report["explain"])


def print_explained(explained: dict[str, Any]) -> None:
    """--explain's counters, one a line: `  redis_commands  6.02` and, under a counter
    given by kind, each kind indented once more."""
    print(f"\nper successful claim (of {explained['successful_claims']}), counts:")
    for name, value in (explained["per_successful_claim"] or {}).items():
        if isinstance(value, dict):
            print(f"  {name}:")
            for kind, count in value.items():
                print(f"    {kind:<40}  {count}")
        else:
            print(f"  {name:<42}  {value}")
    for name, why in explained["not_measured"].items():
        print(f"  {name:<42}  not measured ({why})")


def _slashed(values: list[float]) -> str:
    return " / ".join(str(value) for value in values)


def _pairs(values: dict[Any, Any], separator: str = "=") -> str:
    return ", ".join(f"{k}{separator}{v}" for k, v in values.items())
