"""`python -m devstack.cluster -- COMMAND`, as docs/CLUSTER.md gives it: the scale-out run
(bench through HAProxy to the hosts), on the session's stores, torn down at the end."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from devstack.cluster.network import why_not_allowed
from orchestrator.settings import Settings


def namespaces() -> set[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in listed.stdout.splitlines() if line.strip()}


def test_a_command_runs_against_the_hosts_and_everything_goes_after(
    settings: Settings, service: object
) -> None:
    reason = why_not_allowed()
    if reason:
        pytest.skip(reason)
    stores = {
        "DATABASE_URL": settings.database_url,
        "MONGO_URL": settings.mongo_url,
        "REDIS_URL": settings.redis_url,
    }
    before = namespaces()
    bench = (
        f"{sys.executable} -m bench claim-rate --requests 200 --users 200 --stock 200 "
        "--concurrency 8 --base-url $BASE_URL --database-url $DATABASE_URL "
        "--redis-url $REDIS_URL --mongo-url $MONGO_URL --ceiling-seconds 1 --json"
    )
    cluster = [sys.executable, "-m", "devstack.cluster", "--hosts", "2", "--cpus-per-host", "0.5"]
    ran = subprocess.run(
        [*cluster, "--", "sh", "-c", bench],
        env=os.environ | stores,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr[-2000:]
    report = json.loads(ran.stdout[ran.stdout.index("{") :])
    assert report["correct"], report["problems"]
    assert namespaces() <= before  # the hosts it made are gone
