"""Logs as JSON lines on stdout, each carrying the request and saga it was written for."""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime

import orjson

# Set by the request middleware and the saga engine; a task started while serving a
# request (the shielded saga) inherits them.
REQUEST_ID: ContextVar[str] = ContextVar("request_id", default="")
SAGA_ID: ContextVar[str] = ContextVar("saga_id", default="")


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
            line["error"] = self.formatException(record.exc_info)
        return orjson.dumps(line).decode()


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonLineFormatter())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
