"""Clients of the HA topology as the service reaches it: through the Sentinels it names."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import redis
from redis.sentinel import Sentinel


@contextlib.contextmanager
def sentinel_master(sentinels: str, master_name: str) -> Iterator[redis.Redis]:
    """A client of the master the Sentinels at `sentinels` ("host:port,...") name; every
    connection it and the Sentinel clients opened is closed after."""
    addresses = (address.split(":") for address in sentinels.split(","))
    sentinel = Sentinel([(host, int(port)) for host, port in addresses], socket_timeout=2)
    master = sentinel.master_for(master_name)
    try:
        yield master
    finally:
        master.close()
        for client in sentinel.sentinels:
            client.close()
