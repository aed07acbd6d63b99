"""`--explain`: what one successful claim costs, in counts, read before and after the load.

Most figures come from counters something already keeps, so reading them adds nothing
to the claim path:
- the stores' own: Redis `INFO stats` and `INFO commandstats` (commands by name, those
  a Lua script runs among them, `total_reads_processed`: the reads its event loop did,
  one per round trip that arrived alone, and `total_net_input_bytes`); PostgreSQL's
  `pg_stat_statements` (statements by database: the service's, and FerretDB's, whose SQL
  is MongoDB's cost), when the server preloads it;
- the gateway's Prometheus metrics (/metrics, every worker added up): `store_batch_size`
  gives each batcher's batches and their mean size;
- the kernel's: the gateway processes' read and write system calls (/proc/PID/io), which
  are every send and receive, to the stores and to the clients alike;
- and, only in a gateway bench started with --explain (bench/counting_gateway.py: it
  wraps library entry points, and is slower while it counts), the workers' own counts
  of log lines, metric updates, JSON encodes and decodes, pydantic validations, MongoDB
  commands (each a round trip), tasks and futures created.

`round_trips` puts one figure per store side by side: PostgreSQL's statements (asyncpg
sends each in one round trip), MongoDB's commands, Redis's reads.

The window is the load: from just before it to just after. Whatever else the gateway
did in it (a recovery round, a readiness probe, bench's scrape of /metrics) is in it
too; over thousands of claims it is a rounding error.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families

from bench.counting_gateway import KINDS, read_counts
from bench.cpu import Role, processes

BATCHERS = ("reserve", "record", "confirm", "log")
_SCRIPT_CALLS = ("eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro")


@dataclass
class Snapshot:
    counts: dict[str, float] = field(default_factory=dict)  # flat: "redis.commands.get"
    missing: dict[str, str] = field(default_factory=dict)  # figure group -> why not read


@dataclass(frozen=True)
class Explainer:
    """Where the counters are read: the gateway (URL and role), and the stores' URLs."""

    base_url: str
    gateway: Role
    database_url: str | None
    redis_url: str | None
    ferretdb_database: str | None  # FerretDB's database on that PostgreSQL, if it is one
    counts_dir: Path | None  # a counting gateway's (bench/counting_gateway.py)

    async def snapshot(self) -> Snapshot:
        snap = Snapshot()
        if self.counts_dir is None:
            snap.missing["gateway_calls"] = "counted only in a gateway bench starts (no --base-url)"
        else:
            for kind, value in read_counts(self.counts_dir).items():
                snap.counts[f"gateway.{kind}"] = value
        await self._batch_metrics(snap)
        self._syscalls(snap)
        await self._redis(snap)
        await self._postgres(snap)
        return snap

    async def _batch_metrics(self, snap: Snapshot) -> None:
        async with aiohttp.ClientSession() as http, http.get(f"{self.base_url}/metrics") as r:
            text = await r.text()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name in ("store_batch_size_count", "store_batch_size_sum"):
                    which = "batches" if sample.name.endswith("count") else "batched_calls"
                    snap.counts[f"{which}.{sample.labels['batch']}"] = sample.value

    def _syscalls(self, snap: Snapshot) -> None:
        if not self.gateway.is_found:
            snap.missing["gateway_syscalls"] = "gateway not found"
            return
        for pid in self.gateway.members(processes()):
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/io").read_text().splitlines():
                    name, value = line.split(":")
                    if name in ("syscr", "syscw"):
                        key = f"syscalls.{'read' if name == 'syscr' else 'write'}"
                        snap.counts[key] = snap.counts.get(key, 0) + int(value)

    async def _redis(self, snap: Snapshot) -> None:
        if not self.redis_url:
            snap.missing["redis"] = "no --redis-url"
            return
        client = aioredis.Redis.from_url(self.redis_url, decode_responses=True)
        try:
            info = await client.info("stats", "commandstats")
        finally:
            await client.aclose()
        snap.counts["redis.reads"] = info["total_reads_processed"]
        snap.counts["redis.bytes_in"] = info["total_net_input_bytes"]
        for key, stats in info.items():
            if key.startswith("cmdstat_") and key != "cmdstat_info":  # bench's own INFO
                snap.counts[f"redis.commands.{key.removeprefix('cmdstat_')}"] = stats["calls"]

    async def _postgres(self, snap: Snapshot) -> None:
        if not self.database_url:
            snap.missing["postgresql"] = "no --database-url"
            return
        # Read from the server's `postgres` database: bench's own statements stay out of
        # the service's and FerretDB's.
        parts = urlsplit(self.database_url)
        url = urlunsplit(parts._replace(path="/postgres"))
        connection = await asyncpg.connect(url)
        try:
            preloaded = await connection.fetchval("SHOW shared_preload_libraries")
            if "pg_stat_statements" not in preloaded:
                snap.missing["postgresql"] = "the server does not preload pg_stat_statements"
                return
            await connection.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            rows = await connection.fetch(
                "SELECT d.datname, left(regexp_replace(s.query, '\\s+', ' ', 'g'), 60) AS kind,"
                " sum(s.calls)::bigint AS calls"
                " FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid"
                " WHERE d.datname = ANY($1::text[]) GROUP BY 1, 2",
                [parts.path.strip("/"), self.ferretdb_database or ""],
            )
        finally:
            await connection.close()
        service = parts.path.strip("/")
        for row in rows:
            store = "postgresql" if row["datname"] == service else "ferretdb_sql"
            snap.counts[f"{store}.{row['kind']}"] = row["calls"]


def _per(value: float, claims: int) -> float:
    return round(value / claims, 3)


def explain(before: Snapshot, after: Snapshot, claims: int) -> dict[str, Any]:
    """The counters per successful claim (and their totals over the load)."""
    delta = {k: v - before.counts.get(k, 0) for k, v in after.counts.items()}
    missing = {**before.missing, **after.missing}
    if not claims:
        return {"successful_claims": 0, "per_successful_claim": None, "not_measured": missing}

    def group(prefix: str) -> dict[str, float]:
        return {
            k.removeprefix(prefix): _per(v, claims)
            for k, v in sorted(delta.items())
            if k.startswith(prefix) and v
        }

    per: dict[str, Any] = {}
    if "postgresql" not in missing:
        statements = group("postgresql.")
        per["postgresql_statements"] = round(sum(statements.values()), 3)
        per["postgresql_statements_by_text"] = statements
        ferretdb = group("ferretdb_sql.")
        per["ferretdb_sql_statements"] = round(sum(ferretdb.values()), 3)
        per["ferretdb_sql_statements_by_text"] = ferretdb
    if "redis" not in missing:
        # Redis counts the commands a Lua script runs as commands: all are here.
        commands = group("redis.commands.")
        per["redis_commands"] = round(sum(commands.values()), 3)
        per["redis_script_calls"] = round(
            sum(v for k, v in commands.items() if k in _SCRIPT_CALLS), 3
        )
        per["redis_commands_by_name"] = commands
        # Less bench's own INFO (one read before the load's snapshot was taken).
        per["redis_round_trips"] = _per(max(0, delta.get("redis.reads", 0) - 1), claims)
        # What the gateway sent Redis (and bench's INFO, some 30 bytes): the log's size.
        per["redis_bytes_received"] = _per(delta.get("redis.bytes_in", 0), claims)
    per["round_trips"] = {
        "postgresql": per.get("postgresql_statements"),
        "mongodb": None
        if "gateway_calls" in missing
        else _per(delta.get("gateway.mongodb_commands", 0), claims),
        "redis": per.get("redis_round_trips"),
    }
    per["store_batches"] = {b: _per(delta.get(f"batches.{b}", 0), claims) for b in BATCHERS}
    per["mean_batch_size"] = {
        b: round(delta[f"batched_calls.{b}"] / delta[f"batches.{b}"], 2)
        if delta.get(f"batches.{b}")
        else None
        for b in BATCHERS
    }
    if "gateway_syscalls" not in missing:
        per["gateway_syscalls"] = group("syscalls.")
    if "gateway_calls" not in missing:
        per.update(group("gateway."))
        for kind in KINDS:
            per.setdefault(kind, 0.0)
    return {
        "successful_claims": claims,
        "per_successful_claim": per,
        "totals": {k: v for k, v in sorted(delta.items()) if v},
        "not_measured": missing,
    }


def ferretdb_database(mongo_role: Role) -> str | None:
    for part in mongo_role.parts:
        if part.backend_database:
            return part.backend_database
    return None
