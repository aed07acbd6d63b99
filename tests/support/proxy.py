"""A TCP proxy a test can cut, hang and restore: a store outage without touching the store.

Not a fake store: the bytes go to the real server; the proxy only decides whether they flow.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from orchestrator.settings import Settings
from tests.support.settings import changed


class CuttableProxy:
    """`delay`: how long each chunk from the server is held back, as over a slow link."""

    def __init__(self, target_host: str, target_port: int, delay: float = 0.0) -> None:
        self._target = (target_host, target_port)
        self._delay = delay
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._flowing = asyncio.Event()  # cleared while the proxy hangs
        self._flowing.set()
        self._passing_closes = asyncio.Event()  # cleared while a server's close is held back
        self._passing_closes.set()
        self.port = 0
        self.connections = 0  # connected through to the server now
        self.most_connections = 0  # ever at once: what a client held on the server
        self.closes_held = 0  # connections the server closed whose close is held back

    @classmethod
    def for_url(cls, url: str, delay: float = 0.0) -> CuttableProxy:
        parts = urlsplit(url)
        return cls(parts.hostname or "127.0.0.1", parts.port or 0, delay)

    def url_through(self, url: str) -> str:
        """`url` with its host and port replaced by the proxy's."""
        parts = urlsplit(url)
        auth = parts.netloc.rpartition("@")[0]
        netloc = f"{auth + '@' if auth else ''}127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        """Refuse new connections and drop the open ones, as a crashed server would."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def hang(self) -> None:
        """Become a black hole: connections are still accepted and the open ones kept, but
        not a byte flows either way, as with a server that is up and never answers."""
        self._flowing.clear()

    async def hold_closes(self) -> None:
        """Pass on everything a server sends but its closing the connection: the client
        reads a session's last words (PostgreSQL's FATAL error) and not yet that it
        ended, as when the close is slow on its way. restore() passes the closes on."""
        self._passing_closes.clear()

    async def restore(self) -> None:
        """Undo a cut, a hang or held closes. Hung connections are dropped, with whatever
        they held back."""
        self._passing_closes.set()
        if not self._flowing.is_set():
            for writer in list(self._writers):
                writer.transport.abort()
            self._writers.clear()
            self._flowing.set()
        if self._server is None:
            await self.start()

    async def close(self) -> None:
        await self.cut()
        self._flowing.set()  # hung connections are gone by now: let their handlers end
        self._passing_closes.set()
        for task in list(self._tasks):
            task.cancel()

    async def _serve(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        # Known from the start, so a cut (or the end of the test) drops it whatever this
        # handler is waiting for: a writer left open warns when it is collected, in
        # whichever later test that happens.
        self._writers.add(client_writer)
        try:
            if not self._flowing.is_set():
                # Accepted and held open, never connected through; restore() drops it.
                await self._flowing.wait()
                return
            await self._connect_through(client_reader, client_writer)
        finally:
            client_writer.transport.abort()
            self._writers.discard(client_writer)

    async def _connect_through(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self._target)
        except OSError:
            return
        self._writers.add(upstream_writer)
        try:
            if client_writer not in self._writers:  # cut while connecting
                return
            self.connections += 1
            self.most_connections = max(self.most_connections, self.connections)
            pumps = [
                asyncio.ensure_future(self._pump(client_reader, upstream_writer)),
                asyncio.ensure_future(
                    self._pump(upstream_reader, client_writer, self._delay, from_server=True)
                ),
            ]
            self._tasks.update(pumps)
            try:
                await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            finally:
                self.connections -= 1
                for pump in pumps:
                    pump.cancel()
                    self._tasks.discard(pump)
        finally:
            upstream_writer.transport.abort()
            self._writers.discard(upstream_writer)

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        delay: float = 0.0,
        *,
        from_server: bool = False,
    ) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(65536):
                if delay:
                    await asyncio.sleep(delay)  # the slow link itself, not a wait in a test
                await self._flowing.wait()  # a hang holds the bytes back
                writer.write(data)
                await writer.drain()
            if from_server and not self._passing_closes.is_set():
                self.closes_held += 1
                try:
                    await self._passing_closes.wait()
                finally:
                    self.closes_held -= 1


def through(settings: Settings, **proxies: CuttableProxy) -> Settings:
    """The settings with the named store URLs routed through their proxies."""
    changes: dict[str, object] = {"store_timeout_seconds": 1.0}
    for field, proxy in proxies.items():
        changes[field] = proxy.url_through(getattr(settings, field))
    return changed(settings, changes)


class ProxyInThread:
    """A CuttableProxy on an event loop of its own, in a thread: it keeps forwarding while
    the test's loop is blocked (starting a gateway process waits synchronously)."""

    def __init__(self, url: str, delay: float = 0.0) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.proxy = CuttableProxy.for_url(url, delay)
        self._call(self.proxy.start())

    def _call(self, step: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(step, self._loop).result(timeout=30)

    def cut(self) -> None:
        self._call(self.proxy.cut())

    def restore(self) -> None:
        self._call(self.proxy.restore())

    def close(self) -> None:
        self._call(self.proxy.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()
