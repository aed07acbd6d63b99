"""`bench --explain`, run small on stores and a counting gateway of bench's own: every
counter per successful claim is in the report, and each is what a claim can cost."""

from __future__ import annotations

import json

from bench.counting_gateway import KINDS
from bench.explain import BATCHERS
from bench.report import print_explained
from tests.e2e.test_bench import bench

CLAIMS = 400

COUNTERS = (
    "round_trips",
    "postgresql_statements",
    "postgresql_statements_by_text",
    "ferretdb_sql_statements",
    "redis_commands",
    "redis_script_calls",
    "redis_commands_by_name",
    "redis_round_trips",
    "redis_bytes_received",
    "store_batches",
    "mean_batch_size",
    "gateway_syscalls",
    *KINDS,
)


async def test_explain_counts_what_one_successful_claim_costs(capsys):
    code, out = await bench(
        "claim-rate",
        *("--requests", str(CLAIMS), "--users", str(CLAIMS), "--stock", str(CLAIMS)),
        *("--concurrency", "16", "--ceiling-seconds", "0.3", "--explain", "--json"),
    )
    report = json.loads(out)
    assert code == 0, report["problems"]
    explained = report["explain"]
    assert explained["successful_claims"] == CLAIMS
    assert explained["not_measured"] == {}  # bench's own stack and gateway: all of it
    per = explained["per_successful_claim"]
    assert set(COUNTERS) <= set(per), set(COUNTERS) - set(per)

    # The saga log: a claim's writes are fenced scripts, each running several commands.
    assert 1 <= per["redis_script_calls"] <= 4
    assert per["redis_script_calls"] < per["redis_commands"] < 60
    # Each store: at most one round trip per claim and step (batches share them).
    trips = per["round_trips"]
    assert 0 < trips["postgresql"] <= 3  # reserve and confirm, and nothing else per claim
    assert 0 < trips["mongodb"] <= 1  # record
    assert 0 < trips["redis"] <= per["redis_script_calls"]
    assert 100 < per["redis_bytes_received"] < 10_000  # two log writes' arguments
    if "PostgreSQL backends" in report["cpu"]["roles"]["mongodb"]:  # FerretDB, not mongod
        assert per["ferretdb_sql_statements"] > 0  # its SQL for the claim documents
    for batcher in BATCHERS:
        assert 0 < per["store_batches"][batcher] <= 2, batcher
        assert per["mean_batch_size"][batcher] >= 1, batcher
    # The gateway: one request read and one answer written, at least.
    assert per["gateway_syscalls"]["read"] >= 1
    assert per["gateway_syscalls"]["write"] >= 1
    assert 1 <= per["pydantic_validations"] <= 10  # the request, at least
    assert 1 <= per["json_decodes"] <= 10  # its body, at least
    assert 1 <= per["json_encodes"] <= 20  # the answer, at least
    assert 2 <= per["metric_updates"] <= 50  # the request's count and latency, at least
    assert 0 < per["tasks_created"] < 50
    assert 0 < per["futures_created"] < 100
    assert per["log_lines"] < 1  # LOG_LEVEL=warning: a claim that succeeds says nothing

    print_explained(explained)
    printed = capsys.readouterr().out
    for counter in COUNTERS:
        assert f"  {counter}" in printed, counter
