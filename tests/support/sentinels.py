"""A Redis master, a replica of it and three Sentinels watching them, for tests that fail
the saga log over: each in a folder of its own under a temp dir, on free loopback ports,
all stopped at the end, whatever happened.

The moves are Sentinel's own: `SENTINEL FAILOVER` (a switchover: the old master is told
to replicate the new one, and stays up) or the master killed (SIGKILL: the sentinels see
it down after a second and promote the replica).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from devstack.processes import Server, accepts_tcp, find, free_port, spawn, wait_until
from tests.support.redis_replicas import port_of, start_redis_node
from tests.support.waiting import eventually

# Seconds: a master unanswered this long is down for a sentinel; two agreeing promote.
DOWN_AFTER_MS = 1000
QUORUM = 2


@dataclass
class SentinelGroup:
    name: str  # the master's, as the sentinels know it (REDIS_SENTINEL_MASTER)
    master: Server
    replica: Server
    sentinels: list[Server]

    @property
    def addresses(self) -> str:
        """REDIS_SENTINELS."""
        return ",".join(f"127.0.0.1:{port_of(sentinel)}" for sentinel in self.sentinels)

    @property
    def redis_url(self) -> str:
        """REDIS_URL beside the sentinels: its host is not used, its db is."""
        return "redis://ignored.invalid:6379/0"

    async def sentinel(self, *command: Any) -> Any:
        """A command to the first sentinel that answers."""
        for sentinel in self.sentinels:
            client = aioredis.Redis(port=port_of(sentinel), decode_responses=True)
            try:
                return await client.execute_command(*command)
            except (ConnectionError, OSError, aioredis.ConnectionError):
                continue
            finally:
                await client.aclose()
        raise AssertionError("no sentinel answers")

    async def master_port(self) -> int:
        _, port = await self.sentinel("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name)
        return int(port)

    async def all_watching(self) -> bool:
        """Every sentinel knows the replica (online) and the two other sentinels: until
        then a failover can be refused (no good replica) or not agreed on."""
        for sentinel in self.sentinels:
            client = aioredis.Redis(port=port_of(sentinel), decode_responses=True)
            try:
                replicas = await client.execute_command("SENTINEL", "REPLICAS", self.name)
                others = await client.execute_command("SENTINEL", "SENTINELS", self.name)
            finally:
                await client.aclose()
            if len(others) != len(self.sentinels) - 1 or not any(
                "s_down" not in _fields(replica)["flags"]
                and _fields(replica).get("master-link-status") == "ok"
                for replica in replicas
            ):
                return False
        return True

    async def failover(self) -> int:
        """SENTINEL FAILOVER; returns once the sentinels name the new master and it takes
        writes. The old master stays up, told to replicate the new one."""
        old = await self.master_port()
        await self.sentinel("SENTINEL", "FAILOVER", self.name)
        return await self._promoted(old)

    async def kill_master(self) -> int:
        """SIGKILL the master; returns once the sentinels have promoted the replica."""
        old = await self.master_port()
        server = self.master if port_of(self.master) == old else self.replica
        server.process.kill()
        await asyncio.to_thread(server.process.wait)
        return await self._promoted(old)

    async def _promoted(self, old: int) -> int:
        async def moved() -> bool:
            return await self.master_port() != old

        await eventually(moved, tries=600)
        new = await self.master_port()
        client = aioredis.Redis(port=new, decode_responses=True)
        try:

            async def takes_writes() -> bool:
                return (await client.info("replication"))["role"] == "master"

            await eventually(takes_writes)
        finally:
            await client.aclose()
        return new

    async def role(self, port: int) -> str:
        client = aioredis.Redis(port=port, decode_responses=True)
        try:
            return str((await client.info("replication"))["role"])
        finally:
            await client.aclose()


def _fields(reply: Any) -> dict[str, str]:
    """A SENTINEL REPLICAS entry: a flat [name, value, ...] list, or a dict already."""
    if isinstance(reply, dict):
        return reply
    return dict(zip(reply[::2], reply[1::2], strict=True))


@asynccontextmanager
async def sentinel_group() -> AsyncIterator[SentinelGroup]:
    """Started, and every sentinel watching the master and its replica."""
    with ExitStack() as stack:
        root = Path(tempfile.mkdtemp(prefix="coupon-sentinels-"))
        stack.callback(shutil.rmtree, root, ignore_errors=True)
        master = start_redis_node(root / "master")
        stack.callback(master.stop)
        replica = start_redis_node(
            root / "replica", "--replicaof", "127.0.0.1", str(port_of(master))
        )
        stack.callback(replica.stop)
        name = f"coupons-{uuid.uuid4().hex[:8]}"
        sentinels = []
        for number in range(3):
            sentinel = _sentinel(root / f"sentinel{number}", name, port_of(master))
            stack.callback(sentinel.stop)
            sentinels.append(sentinel)
        group = SentinelGroup(name, master, replica, sentinels)
        await eventually(group.all_watching)
        yield group


def _sentinel(folder: Path, name: str, master_port: int) -> Server:
    folder.mkdir()
    port = free_port()
    config = folder / "sentinel.conf"  # a sentinel rewrites it as it learns: its own copy
    config.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {folder}\n"
        f"sentinel monitor {name} 127.0.0.1 {master_port} {QUORUM}\n"
        f"sentinel down-after-milliseconds {name} {DOWN_AFTER_MS}\n"
        f"sentinel failover-timeout {name} 10000\n"
    )
    log_path = folder / "sentinel.log"
    process = spawn("redis-sentinel", [find("redis-sentinel"), str(config)], log_path)
    wait_until("redis-sentinel", accepts_tcp(port), process, log_path)
    return Server("redis-sentinel", f"redis://127.0.0.1:{port}", process, log_path)
