"""The worker count from the CPUs a process may really use, and each worker's share of the
service's connection budget."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.process.budget import (
    MONGO_MONITOR_CONNECTIONS,
    BudgetTooSmall,
    cgroup_cpu_limit,
    for_each_worker,
    for_the_tool,
    usable_cpus,
    worker_count,
    worker_share,
)
from orchestrator.settings import Settings
from tests.support.settings import changed

DEFAULTS = Settings(_env_file=None)


def _usable_cpus_pinned_to(cpus: set[int], cgroup_root: Path) -> int:
    """usable_cpus() in a child process whose CPU affinity is `cpus`, as `taskset` would set."""
    code = (
        "from pathlib import Path; from orchestrator.process.budget import usable_cpus; "
        f"print(usable_cpus(Path({str(cgroup_root)!r})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        preexec_fn=lambda: os.sched_setaffinity(0, cpus),
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout)


def test_the_worker_count_follows_cpu_affinity(tmp_path):
    first = min(os.sched_getaffinity(0))
    assert _usable_cpus_pinned_to({first}, tmp_path) == 1
    assert usable_cpus(tmp_path) == len(os.sched_getaffinity(0))


def test_workers_0_means_one_per_usable_cpu(tmp_path):
    auto = changed(DEFAULTS, {"workers": 0})
    assert worker_count(auto, tmp_path) == min(len(os.sched_getaffinity(0)), 8)
    assert worker_count(changed(auto, {"workers": 5}), tmp_path) == 5


def test_a_cgroup_v2_quota_is_read_from_cpu_max(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_limit(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_limit(tmp_path) is None


def test_a_cgroup_v1_quota_is_read_from_cfs_files(tmp_path):
    cpu = tmp_path / "cpu,cpuacct"
    cpu.mkdir()
    (cpu / "cpu.cfs_period_us").write_text("100000\n")
    (cpu / "cpu.cfs_quota_us").write_text("250000\n")
    assert cgroup_cpu_limit(tmp_path) == 2.5
    (cpu / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_cpu_limit(tmp_path) is None


def test_a_quota_of_one_cpu_gives_one_worker(tmp_path):
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two CPUs to tell the quota from the affinity")
    (tmp_path / "cpu.max").write_text("100000 100000\n")
    assert usable_cpus(tmp_path) == 1
    (tmp_path / "cpu.max").write_text("50000 100000\n")  # half a CPU: still one worker
    assert usable_cpus(tmp_path) == 1


@pytest.mark.parametrize("workers", [1, 2, 8, 16])
def test_the_default_budget_is_never_exceeded(workers):
    share = worker_share(DEFAULTS, workers)
    assert workers * share.pg_pool <= DEFAULTS.pg_max_connections
    assert (
        workers * (share.mongo_pool + MONGO_MONITOR_CONNECTIONS) <= DEFAULTS.mongo_max_connections
    )
    assert workers * share.redis_pool <= DEFAULTS.redis_max_connections
    assert share.sagas <= share.pg_pool
    assert share.pg_pool <= DEFAULTS.pg_pool_size  # the per-process sizes stay caps


def test_sixteen_workers_share_the_default_budget():
    share = worker_share(DEFAULTS, 16)
    assert (share.pg_pool, share.mongo_pool, share.redis_pool, share.sagas) == (4, 14, 32, 4)


def test_a_budget_too_small_for_the_workers_names_the_setting():
    small = changed(DEFAULTS, {"pg_max_connections": 10})
    with pytest.raises(BudgetTooSmall, match=r"PG_MAX_CONNECTIONS=10 .* 16 workers"):
        worker_share(small, 16)


def test_each_worker_runs_with_its_share():
    each = for_each_worker(DEFAULTS, 8)
    assert (each.pg_pool_size, each.mongo_pool_size, each.redis_pool_size) == (8, 30, 64)
    assert each.max_concurrent_sagas == 8


def test_the_replay_tool_is_a_small_client():
    tool = for_the_tool(DEFAULTS)
    assert tool.pg_pool_size <= 2 and tool.redis_pool_size <= 2
    assert tool.mongo_pool_size == 1  # and one monitor connection
    assert tool.startup_wait_seconds == 0
