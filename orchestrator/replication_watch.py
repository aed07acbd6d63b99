"""The saga log's writes that fewer replicas had in time than REDIS_WAIT_REPLICAS asks:
counted, and a log line when that starts and one when it ends, not one per write (a
replica away would otherwise log every write of the sale)."""

from __future__ import annotations

import logging

from orchestrator.metrics import SAGA_LOG_UNREPLICATED

log = logging.getLogger(__name__)


class ReplicationWatch:
    """services/replica_wait.py's observer, one per saga log."""

    def __init__(self) -> None:
        self._short = False

    def short(self, writes: int, acknowledged: int, wanted: int) -> None:
        SAGA_LOG_UNREPLICATED.inc(writes)
        if self._short:
            return
        self._short = True
        log.warning(
            "saga log writes reached %d of the %d replicas REDIS_WAIT_REPLICAS asks for "
            "within REDIS_WAIT_TIMEOUT_MS; going on without them (a failover now may lose "
            "them: recovery then settles their sagas from PostgreSQL and MongoDB)",
            acknowledged,
            wanted,
        )

    def met(self) -> None:
        if self._short:
            self._short = False
            log.warning("saga log writes reach the replicas REDIS_WAIT_REPLICAS asks for again")
