"""A loopback TCP forwarder that can cut every connection on demand.

Used to make a broker unreachable for a while without losing its memory-only data: start Tansu
with its advertised listener set to the proxy's port, so clients only ever talk through the
proxy, then ``pause()`` and ``resume()``::

    with TcpProxy() as proxy, start_tansu(advertised_port=proxy.port) as broker:
        proxy.target = ("127.0.0.1", broker.port)
        ...
        proxy.pause()   # every client connection drops; new ones are reset
        proxy.resume()  # clients reconnect on their own

The proxy runs an asyncio loop in a daemon thread; its methods are thread-safe and block until
done.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from cryptopipe.runtime.lifecycle import StartStop

log = logging.getLogger(__name__)

PauseMode = Literal["reset", "blackhole"]
T = TypeVar("T")

_CHUNK = 64 * 1024


@dataclass
class ProxyStats:
    """Connection counts since start (read them, do not write)."""

    accepted: int = 0
    """Client connections accepted, whatever became of them."""
    forwarded: int = 0
    """Connections joined to the upstream."""
    refused: int = 0
    """Connections reset at once (paused in ``reset`` mode, or the upstream could not be reached)."""
    held: int = 0
    """Connections held open without an answer (paused in ``blackhole`` mode)."""
    bytes_up: int = 0
    """Bytes forwarded client -> upstream."""
    bytes_down: int = 0
    """Bytes forwarded upstream -> client."""


@dataclass(eq=False)
class _Link:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with an RST (SO_LINGER 0), so the peer notices at once instead of seeing a clean EOF."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class TcpProxy(StartStop):
    """Forward ``listen_host:port`` to ``target``, with :meth:`pause` and :meth:`resume`.

    ``target`` may be set (or changed) after start; it is read for each new connection. While
    paused, new connections are reset at once (``mode="reset"``) or accepted and left silent
    (``mode="blackhole"``: clients wait until their own timeouts; they are reset on resume).
    """

    def __init__(
        self, target: tuple[str, int] | None = None, *, listen_host: str = "127.0.0.1", listen_port: int = 0
    ) -> None:
        self.target = target
        self.listen_host = listen_host
        self._listen_port = listen_port
        self.stats = ProxyStats()
        self._paused: PauseMode | None = None
        self._links: set[_Link] = set()
        self._held: set[asyncio.StreamWriter] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("TcpProxy not started")
        return self._port

    @property
    def address(self) -> str:
        return f"{self.listen_host}:{self.port}"

    @property
    def paused(self) -> bool:
        return self._paused is not None

    @property
    def active_connections(self) -> int:
        return len(self._links)

    @property
    def _started(self) -> bool:
        return self._loop is not None

    def start(self) -> TcpProxy:
        if self._loop is not None:
            raise RuntimeError("TcpProxy already started")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp-proxy", daemon=True)
        self._thread.start()
        self._call(self._serve())
        log.debug("TcpProxy listening on %s", self.address)
        return self

    def pause(self, mode: PauseMode = "reset") -> None:
        """Drop every current connection and stop forwarding new ones until :meth:`resume`."""
        self._call(self._pause(mode))
        log.info("TcpProxy %s paused (%s)", self.address, mode)

    def resume(self) -> None:
        """Forward new connections again (held blackhole connections are reset first)."""
        self._call(self._resume())
        log.info("TcpProxy %s resumed", self.address)

    def stop(self) -> None:
        """Close the listener and every connection; stop the loop thread. Idempotent."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if loop.is_running():
            self._call(self._shutdown())
            loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
        self._loop = self._thread = None

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        if self._loop is None:
            coro.close()
            raise RuntimeError("TcpProxy not started")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    # --- on the loop thread ---

    async def _serve(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.listen_host, self._listen_port)
        self._port = int(self._server.sockets[0].getsockname()[1])

    async def _accept(self, reader: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        self.stats.accepted += 1
        if self._paused == "blackhole":
            self.stats.held += 1
            self._held.add(client)
            return
        if self._paused == "reset" or self.target is None:
            self.stats.refused += 1
            _reset(client)
            return
        try:
            up_reader, upstream = await asyncio.wait_for(asyncio.open_connection(*self.target), 5)
        except (OSError, TimeoutError) as exc:
            log.debug("TcpProxy %s: upstream %s unreachable: %s", self.address, self.target, exc)
            self.stats.refused += 1
            _reset(client)
            return
        if self._paused is not None:  # paused while we were connecting
            self.stats.refused += 1
            _reset(upstream)
            _reset(client)
            return
        self.stats.forwarded += 1
        link = _Link(client, upstream)
        self._links.add(link)
        link.tasks = [
            asyncio.create_task(self._pump(reader, upstream, up=True)),
            asyncio.create_task(self._pump(up_reader, client, up=False)),
        ]
        try:
            await asyncio.wait(link.tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._close_link(link)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, up: bool) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(_CHUNK):
                if up:
                    self.stats.bytes_up += len(data)
                else:
                    self.stats.bytes_down += len(data)
                writer.write(data)
                await writer.drain()

    def _close_link(self, link: _Link) -> None:
        self._links.discard(link)
        for task in link.tasks:
            task.cancel()
        _reset(link.client)
        _reset(link.upstream)

    async def _pause(self, mode: PauseMode) -> None:
        self._paused = mode
        for link in list(self._links):
            self._close_link(link)
        await asyncio.sleep(0)

    async def _resume(self) -> None:
        for writer in list(self._held):
            _reset(writer)
        self._held.clear()
        self._paused = None

    async def _shutdown(self) -> None:
        self._paused = "reset"
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            self._close_link(link)
        for writer in list(self._held):
            _reset(writer)
        self._held.clear()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
