"""Redis servers that replicate: a master and a replica of it, for tests of what reaches
the replica (and of Sentinel, tests/support/sentinels.py). Each in a folder of its own
under a temp dir, on free loopback ports, stopped at the end whatever happened."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import redis.asyncio as aioredis

from devstack.processes import Server, accepts_tcp, find, free_port, spawn, wait_until
from tests.support.waiting import eventually


def port_of(server: Server) -> int:
    return int(server.url.rsplit(":", 1)[1].split("/")[0])


def start_redis_node(folder: Path, *more: str) -> Server:
    """A redis-server; `more`: its further arguments (`--replicaof HOST PORT`)."""
    folder.mkdir()
    port = free_port()
    log_path = folder / "redis.log"
    argv = [find("redis-server"), "--port", str(port), "--bind", "127.0.0.1"]
    argv += ["--dir", str(folder), "--save", "", "--appendonly", "no", "--daemonize", "no"]
    # A replica gets its first copy at once, not after the default 5 s wait for others.
    argv += ["--repl-diskless-sync-delay", "0", *more]
    process = spawn("redis", argv, log_path)
    wait_until("redis", accepts_tcp(port), process, log_path)
    return Server("redis", f"redis://127.0.0.1:{port}/0", process, log_path)


async def replicas_online(master: Server) -> int:
    """Replicas the master streams to now."""
    client = aioredis.Redis(port=port_of(master), decode_responses=True)
    try:
        info = await client.info("replication")
    finally:
        await client.aclose()
    return sum(
        1
        for key, value in info.items()
        if key.startswith("slave") and isinstance(value, dict) and value["state"] == "online"
    )


@dataclass
class ReplicatedRedis:
    master: Server
    replica: Server


@asynccontextmanager
async def replicated_redis() -> AsyncIterator[ReplicatedRedis]:
    """A master and one replica of it, streaming."""
    with ExitStack() as stack:
        root = Path(tempfile.mkdtemp(prefix="coupon-redis-replicas-"))
        stack.callback(shutil.rmtree, root, ignore_errors=True)
        master = start_redis_node(root / "master")
        stack.callback(master.stop)
        replica = start_redis_node(
            root / "replica", "--replicaof", "127.0.0.1", str(port_of(master))
        )
        stack.callback(replica.stop)

        async def streaming() -> bool:
            return await replicas_online(master) == 1

        await eventually(streaming)
        yield ReplicatedRedis(master, replica)
