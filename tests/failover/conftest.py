"""The HA topology (devstack/ha), started once for a test module: etcd x3, Patroni with
two PostgreSQL nodes in synchronous mode, Redis primary + replica + 3 Sentinels, FerretDB
on the Patroni cluster. Each test gets it healthy again, whatever the one before it
killed. Per module, not per session: the tiers after this one need no HA stack idling."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from devstack.ha.topology import HaStack

# Debian packages etcd-server, patroni and redis-sentinel (scripts/install-deps).
NEEDED = ("etcd", "patroni", "redis-sentinel")


def _skip_without_packages() -> None:
    missing = [binary for binary in NEEDED if shutil.which(binary) is None]
    if missing:
        pytest.skip(
            f"{', '.join(missing)} not installed (Debian packages etcd-server, patroni, "
            "redis-sentinel): run `make deps`"
        )


@pytest.fixture(scope="module")
def ha_stack() -> Iterator[HaStack]:
    _skip_without_packages()
    with HaStack() as stack:
        yield stack


@pytest.fixture
def ha(ha_stack: HaStack) -> HaStack:
    ha_stack.heal()
    return ha_stack


@pytest.fixture(scope="module")
def async_ha() -> Iterator[HaStack]:
    """A topology of its own replicating asynchronously: a failover can lose commits."""
    _skip_without_packages()
    with HaStack(synchronous=False) as stack:
        yield stack
