"""How many workers, and how many store connections each may open: the one rule.

PG_/MONGO_/REDIS_MAX_CONNECTIONS bound what the whole gateway (all its workers) opens to
each store. Each worker gets an equal share, and its pools are the smaller of that share
and the per-process sizes (PG_POOL_SIZE, ...), which stay as caps. A worker runs no more
sagas at once than it has PostgreSQL connections: each saga holds one while it runs.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from orchestrator.settings import Settings

CGROUP_ROOT = Path("/sys/fs/cgroup")
# WORKERS=0 on a big host: past this many workers the hot stock row, not the CPUs, is
# the limit, and each worker's share of the connection budget gets too small.
MAX_AUTO_WORKERS = 8
# PyMongo keeps, per server, a monitor connection and (streaming protocol) an RTT one
# beside the pool; they count against the budget too.
MONGO_MONITOR_CONNECTIONS = 2
# Less than this per worker and one slow call stalls the worker: refuse to start instead.
MIN_POOL = 2
# The replay tool is a client of the service's stores, not a second service.
TOOL_CONNECTIONS = 2


class BudgetTooSmall(ValueError):
    """The budget cannot give every worker a working share; the message says what to change."""


@dataclass(frozen=True)
class WorkerShare:
    pg_pool: int
    mongo_pool: int
    redis_pool: int
    sagas: int


def _cgroup_v2_quota(directory: Path) -> float | None:
    try:
        quota, period = (directory / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    return None if quota == "max" else int(quota) / int(period)


def _cgroup_v1_quota(directory: Path) -> float | None:
    try:
        quota = int((directory / "cpu.cfs_quota_us").read_text())
        period = int((directory / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if quota <= 0 or period <= 0 else quota / period


def _own_cgroups() -> dict[str, str]:
    """Controller -> this process's cgroup path ('' is the v2 unified hierarchy)."""
    paths: dict[str, str] = {}
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return paths
    for line in lines:
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            paths[controller] = path
    return paths


def _up_to(root: Path, own: str) -> list[Path]:
    """The cgroup's directory and every ancestor up to `root` (a quota anywhere applies)."""
    directory = root / own.lstrip("/")
    found = [directory, *directory.parents]
    return found[: found.index(root) + 1] if root in found else [root]


def cgroup_cpu_limit(cgroup_root: Path = CGROUP_ROOT) -> float | None:
    """CPUs the cgroup quota allows (cgroup v2 cpu.max or v1 cfs quota), None if unlimited."""
    own = _own_cgroups()
    limits = [
        quota
        for directory in _up_to(cgroup_root, own.get("", "/"))
        if (quota := _cgroup_v2_quota(directory)) is not None
    ]
    for mount in ("cpu", "cpu,cpuacct"):
        limits += [
            quota
            for directory in _up_to(cgroup_root / mount, own.get("cpu", "/"))
            if (quota := _cgroup_v1_quota(directory)) is not None
        ]
    return min(limits, default=None)


def usable_cpus(cgroup_root: Path = CGROUP_ROOT) -> int:
    """CPUs this process may really use: its affinity, cut to whole CPUs of the quota."""
    cpus = len(os.sched_getaffinity(0))
    limit = cgroup_cpu_limit(cgroup_root)
    if limit is not None:
        cpus = min(cpus, max(1, math.floor(limit)))
    return cpus


def worker_count(settings: Settings, cgroup_root: Path = CGROUP_ROOT) -> int:
    return settings.workers or min(usable_cpus(cgroup_root), MAX_AUTO_WORKERS)


def worker_share(settings: Settings, workers: int) -> WorkerShare:
    """Each worker's pools: its part of the service's budget, capped by the per-process sizes."""
    pg = min(settings.pg_pool_size, settings.pg_max_connections // workers)
    mongo = min(
        settings.mongo_pool_size,
        settings.mongo_max_connections // workers - MONGO_MONITOR_CONNECTIONS,
    )
    redis = min(settings.redis_pool_size, settings.redis_max_connections // workers)
    too_small = [
        f"{name}={budget}"
        for name, budget, pool in [
            ("PG_MAX_CONNECTIONS", settings.pg_max_connections, pg),
            ("MONGO_MAX_CONNECTIONS", settings.mongo_max_connections, mongo),
            ("REDIS_MAX_CONNECTIONS", settings.redis_max_connections, redis),
        ]
        if pool < MIN_POOL
    ]
    if too_small:
        raise BudgetTooSmall(
            f"{', '.join(too_small)} leaves fewer than {MIN_POOL} connections for each of "
            f"{workers} workers: raise it or lower WORKERS"
        )
    return WorkerShare(pg, mongo, redis, sagas=min(settings.max_concurrent_sagas, pg))


def for_each_worker(settings: Settings, workers: int) -> Settings:
    """The settings one worker runs with: its share in place of the per-process caps."""
    share = worker_share(settings, workers)
    return settings.model_copy(
        update={
            "pg_pool_size": share.pg_pool,
            "mongo_pool_size": share.mongo_pool,
            "redis_pool_size": share.redis_pool,
            "max_concurrent_sagas": share.sagas,
        }
    )


def for_the_tool(settings: Settings) -> Settings:
    """The replay tool's settings: a small client (pymongo's monitor connection is one of
    its two; see bootstrap) that fails fast with the store's name instead of waiting."""
    return settings.model_copy(
        update={
            "pg_pool_size": TOOL_CONNECTIONS,
            "mongo_pool_size": 1,
            "redis_pool_size": TOOL_CONNECTIONS,
            "max_concurrent_sagas": 1,
            "startup_wait_seconds": 0.0,
        }
    )
