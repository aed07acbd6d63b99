"""Logs as JSON lines on stdout, each carrying the request and saga it was written for."""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from types import TracebackType

import orjson

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]

# Set by the request middleware and the saga engine; a task started while serving a
# request (the shielded saga) inherits them.
REQUEST_ID: ContextVar[str] = ContextVar("request_id", default="")
SAGA_ID: ContextVar[str] = ContextVar("saga_id", default="")


@contextmanager
def about_saga(saga_id: str) -> Iterator[None]:
    """Lines written inside name this saga; the one named before is restored after (a
    loop over sagas must not leave the last one on every line that follows)."""
    token = SAGA_ID.set(saga_id)
    try:
        yield
    finally:
        SAGA_ID.reset(token)


class JsonLineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if request_id := REQUEST_ID.get():
            line["request_id"] = request_id
        if saga_id := SAGA_ID.get():
            line["saga_id"] = saga_id
        if record.exc_info:
            line["error"] = _error(record.exc_info)
        return orjson.dumps(line).decode()


def _error(exc_info: ExcInfo) -> str:
    """A traceback at debug; otherwise one line, the error and its message."""
    if logging.getLogger().isEnabledFor(logging.DEBUG):
        return "".join(traceback.format_exception(*exc_info)).rstrip()
    error = exc_info[1]
    return f"{type(error).__name__}: {error}" if error is not None else ""


class DriverRetriesAtDebug(logging.Filter):
    """asyncpg says each failed refill of its pool (about every second during an outage)
    as a warning with a traceback; the store watch says an outage once. Kept at debug."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.getMessage().startswith("Failed to restore the pool connection floor"):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger().isEnabledFor(logging.DEBUG)


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonLineFormatter())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    pool_log = logging.getLogger("asyncpg.pool")
    if not any(isinstance(f, DriverRetriesAtDebug) for f in pool_log.filters):
        pool_log.addFilter(DriverRetriesAtDebug())
