"""Saga-log writes short of their replicas: every one counted, logged once per spell."""

from __future__ import annotations

import logging

from orchestrator.metrics import SAGA_LOG_UNREPLICATED
from orchestrator.replication_watch import ReplicationWatch


def test_a_spell_of_short_writes_is_counted_whole_and_logged_at_its_start_and_end(caplog):
    watch = ReplicationWatch()
    before = SAGA_LOG_UNREPLICATED._value.get()

    with caplog.at_level(logging.WARNING, logger="orchestrator.replication_watch"):
        watch.met()
        watch.short(3, 0, 1)
        watch.short(5, 0, 1)
        watch.met()
        watch.met()

    assert SAGA_LOG_UNREPLICATED._value.get() - before == 8
    assert [record.getMessage().split(";")[0] for record in caplog.records] == [
        "saga log writes reached 0 of the 1 replicas REDIS_WAIT_REPLICAS asks for within "
        "REDIS_WAIT_TIMEOUT_MS",
        "saga log writes reach the replicas REDIS_WAIT_REPLICAS asks for again",
    ]
