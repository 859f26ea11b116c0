"""The replay exchange's WebSocket routes and the connections they opened.

``/stream?streams=a/b&timeUnit=MICROSECOND`` wraps each payload as ``{"stream", "data"}`` (combined);
``/ws/<stream>[/...]`` sends raw payloads. A bad stream name, too many streams or an unknown
``timeUnit`` is refused before the upgrade with Binance's ``{"code", "msg"}`` error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from aiohttp import web

from cryptopipe.replay.connection import Connection
from cryptopipe.replay.host import Host
from cryptopipe.replay.wire import error_response, normalise_stream, parse_time_unit


class WebSocketEndpoint:
    """Accepts WebSocket clients for ``host`` and keeps the open ones until they close."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.connections: set[Connection] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/stream", self.handle)
        router.add_get("/ws", self.handle)
        router.add_get("/ws/{tail:.*}", self.handle)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        combined = request.path.startswith("/stream")
        micros = parse_time_unit(request.query.get("timeUnit"))
        if micros is None:
            return error_response(-1100, "Invalid timeUnit.")
        if combined:
            raw_streams = [s for s in request.query.get("streams", "").split("/") if s]
        else:
            raw_streams = [s for s in request.match_info.get("tail", "").split("/") if s]
        streams = [normalise_stream(s) for s in raw_streams]
        bad = [raw for raw, name in zip(raw_streams, streams, strict=True) if name is None]
        if bad:
            return error_response(-1100, f"Invalid stream name {bad[0]!r}.")
        wanted = [s for s in dict.fromkeys(streams) if s is not None]
        max_streams = self.host.config.max_streams
        if len(wanted) > max_streams:
            return error_response(-1100, f"Too many streams ({len(wanted)} > {max_streams} per connection).")
        ws = web.WebSocketResponse(autoping=False, compress=False, max_msg_size=1 << 20)
        await ws.prepare(request)
        conn = Connection(self.host, request, ws, spawn=self.spawn, combined=combined, micros=micros)
        stats = self.host.stats
        stats.connections += 1
        stats.open_connections += 1
        self.connections.add(conn)
        self.host.tape.attach(conn)
        conn.subscribe(wanted)
        try:
            await conn.run()
        finally:
            self.connections.discard(conn)
            stats.open_connections -= 1
        return ws

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def server_shutdown(self) -> None:
        """Send ``serverShutdown`` to every open connection and close them (new ones are accepted)."""
        await asyncio.gather(*(conn.server_shutdown() for conn in tuple(self.connections)))

    async def aclose(self) -> None:
        """Shut every connection down and wait for their closing handshakes."""
        await self.server_shutdown()
        if self._tasks:
            await asyncio.gather(*tuple(self._tasks), return_exceptions=True)
