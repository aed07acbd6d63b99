"""Where the stores' primaries are to be found, read from the settings: the hosts a
DATABASE_URL names, the Redis Sentinels of REDIS_SENTINELS, what MONGO_URL leaves to us.
Parsing only; the settings model says what makes one of them wrong."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

# What asyncpg takes for "connect to the primary" among several hosts.
PRIMARY_ATTRIBUTES = ("read-write", "primary")
# user:password@ in a URL: the password is never echoed.
_PASSWORD = re.compile(r"(://[^:/@]*):[^@/]*@")


def postgres_hosts(url: str) -> list[str]:
    """The hosts a libpq-style URL names: in its authority (`h1:5432,h2:5432`) or in its
    `host` query parameter, comma-separated either way."""
    parts = urlsplit(url)
    authority = parts.netloc.rpartition("@")[2]
    query_hosts = parse_qs(parts.query).get("host", [""])[0]
    named = query_hosts or authority
    return [host for host in named.split(",") if host]


def target_session_attrs(url: str) -> str | None:
    values = parse_qs(urlsplit(url).query).get("target_session_attrs")
    return values[0] if values else None


def sentinel_addresses(value: str) -> list[tuple[str, int]]:
    """REDIS_SENTINELS (`host:port,host:port`, an IPv6 host in brackets) as pairs; a
    ValueError naming the first entry that is not one."""
    addresses = []
    for entry in filter(None, (part.strip() for part in value.split(","))):
        host, colon, port = entry.rpartition(":")
        host = host.removeprefix("[").removesuffix("]")
        if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{entry!r} is not host:port")
        addresses.append((host, int(port)))
    return addresses


def retryable_writes(mongo_url: str) -> dict[str, Any]:
    """The MongoDB client's retryWrites, on unless MONGO_URL says otherwise (a server
    without retryable writes, such as Amazon DocumentDB, needs retryWrites=false)."""
    given = {name.lower() for name in parse_qs(urlsplit(mongo_url).query)}
    return {} if "retrywrites" in given else {"retryWrites": True}


def without_password(url: str) -> str:
    return _PASSWORD.sub(r"\1:***@", url)
