"""One client WebSocket of the replay exchange: its subscriptions, its send queue and its timers.

It answers SUBSCRIBE / UNSUBSCRIBE / LIST_SUBSCRIPTIONS / SET_PROPERTY / GET_PROPERTY, sends server
pings, enforces the 5 messages/s and 1024 streams limits and a 24 h lifetime, and plays the fault
knobs (delay, drop_after, serverShutdown). The serverShutdown event is sent unwrapped
(``{"e":"serverShutdown","E":...}``), with ``E`` in the connection's time unit, and the connection
is closed right after it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Coroutine
from contextlib import suppress
from typing import Any

import msgspec
from aiohttp import WSMsgType, web

from cryptopipe.replay.host import Host
from cryptopipe.replay.network import Sampler
from cryptopipe.replay.wire import normalise_stream
from cryptopipe.schemas.binance import ControlResponse, ErrorBody, encode_json

log = logging.getLogger(__name__)

_CONTROL_DECODER = msgspec.json.Decoder()
_BATCH_BYTES = 256 * 1024

#: Runs a connection's closing handshake as a task the exchange awaits when it closes.
Spawn = Callable[[Coroutine[Any, Any, Any]], None]


def text_frame(payload: bytes) -> bytes:
    """An unmasked, unfragmented WebSocket text frame (RFC 6455 section 5.2), as servers send."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return b"\x81\x7e" + n.to_bytes(2, "big") + payload
    return b"\x81\x7f" + n.to_bytes(8, "big") + payload


def _error_frame(code: int, msg: str, request_id: object) -> bytes:
    return encode_json({"error": ErrorBody(code=code, msg=msg), "id": request_id})


class Connection:
    """One client WebSocket: its subscriptions, its bounded send queue and its timers."""

    def __init__(
        self,
        host: Host,
        request: web.Request,
        ws: web.WebSocketResponse,
        *,
        spawn: Spawn,
        combined: bool,
        micros: bool,
    ) -> None:
        self.host = host
        self.config = host.config
        self._spawn = spawn
        self.request = request
        self.ws = ws
        self.combined = combined
        self.micros = micros
        self.streams: dict[str, None] = {}
        self.queue: deque[tuple[float, bytes, bool]] = deque()
        self.cap = self.config.queue_size
        self.loop = asyncio.get_running_loop()
        self.opened = self.loop.time()
        self.sent = 0
        self.closed_reason: str | None = None
        #: ``drop_after`` was reached: nothing more is sent, and the link is aborted once it has
        #: missed a data frame (see :meth:`_cut_off`).
        self.dark = False
        self.ping_outstanding_since: float | None = None
        self._incoming: deque[float] = deque()
        self._wakeup = asyncio.Event()
        self._room = asyncio.Event()
        #: A frame's time in the queue is when it is due: queued plus its drawn delay, in order.
        self._network = Sampler(self.config.network())

    def enqueue(self, payload: bytes, data: bool = True) -> bool:
        if self.closed_reason is not None:
            return True
        if self.dark:
            if data:  # played for this client, which will never get it: now the drop is a loss
                self.drop("drop_after", abort=True)
            return True
        if len(self.queue) >= self.cap:
            return False
        self.queue.append((self._network.ws_due(self.loop.time()), payload, data))
        if not self._wakeup.is_set():
            self._wakeup.set()
        return True

    def full(self) -> bool:
        return len(self.queue) >= self.cap

    async def wait_room(self, timeout_s: float) -> bool:
        self._room.clear()
        if not self.full():
            return True
        try:
            await asyncio.wait_for(self._room.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    def drop(self, reason: str, *, abort: bool = False) -> None:
        """Close the connection from the server side and count why."""
        if self.closed_reason is not None:
            return
        self.closed_reason = reason
        stats = self.host.stats
        stats.dropped_connections += 1
        stats.close_reasons[reason] = stats.close_reasons.get(reason, 0) + 1
        if reason == "slow_consumer":
            stats.slow_consumers += 1
            log.warning("closing slow consumer %s (%d frames queued)", self.request.remote, len(self.queue))
        else:
            log.info("closing connection from %s: %s", self.request.remote, reason)
        self.host.tape.detach(self, list(self.streams))
        self.queue.clear()
        self._room.set()
        self._wakeup.set()
        self._spawn(self._close(reason, abort))

    async def _close(self, reason: str, abort: bool) -> None:
        if not abort:
            code = {"server_shutdown": 1001, "lifetime": 1000, "pong_timeout": 1000}.get(reason, 1008)
            try:
                await asyncio.wait_for(self.ws.close(code=code, message=reason.encode()), 2.0)
                return
            except (TimeoutError, ConnectionError):
                pass
        transport = self.request.transport
        if transport is not None:
            transport.abort()

    async def run(self) -> None:
        sender = asyncio.create_task(self._sender())
        watchdog = asyncio.create_task(self._watchdog())
        try:
            while True:
                msg = await self.ws.receive()
                if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                    break
                if self.closed_reason is not None:
                    continue
                if not self._count_incoming():
                    self.drop("rate_limit")
                    continue
                if msg.type == WSMsgType.TEXT:
                    self.enqueue(self._control(msg.data), data=False)
                elif msg.type == WSMsgType.PING:
                    await self.ws.pong(msg.data)
                elif msg.type == WSMsgType.PONG:
                    self.ping_outstanding_since = None
                elif msg.type == WSMsgType.BINARY:
                    self.enqueue(_error_frame(3, "Invalid JSON: expected a text frame", None), data=False)
        finally:
            sender.cancel()
            watchdog.cancel()
            await asyncio.gather(sender, watchdog, return_exceptions=True)
            self.host.tape.detach(self, list(self.streams))

    def _count_incoming(self) -> bool:
        now = self.loop.time()
        window = self._incoming
        window.append(now)
        while window and now - window[0] >= 1.0:
            window.popleft()
        return len(window) <= self.config.max_incoming_per_s

    async def _sender(self) -> None:
        """Drain the queue in batches: one socket write carries every frame that is due.

        Frames are unmasked server text frames written straight to the transport (aiohttp's own
        writer, used for pings, close and serverShutdown, writes to the same transport from the same
        loop, so frames never interleave); one write per frame would cap us at the syscall rate.
        """
        ws = self._network.conditions.ws
        delay = bool(ws.base_ms or ws.jitter_ms)
        drop_after = self.config.drop_after
        stats = self.host.stats
        queue = self.queue
        transport = self.request.transport
        if transport is not None:
            transport.set_write_buffer_limits(high=4 * _BATCH_BYTES)
        while self.closed_reason is None:
            if not queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if delay:
                wait = queue[0][0] - self.loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                    continue
            if transport is None or transport.is_closing():
                return
            due = self.loop.time()
            batch: list[bytes] = []
            size = data_frames = 0
            limit_hit = False
            while queue and size < _BATCH_BYTES and queue[0][0] <= due:
                _, payload, data = queue.popleft()
                batch.append(text_frame(payload))
                size += len(payload)
                if data:
                    data_frames += 1
                    if drop_after is not None and self.sent + data_frames >= drop_after:
                        limit_hit = True
                        break
            if len(queue) <= self.cap // 2:
                self._room.set()
            transport.write(b"".join(batch))
            self.sent += data_frames
            stats.frames_sent += data_frames
            if limit_hit:
                await self._cut_off()
                return
            # backpressure: a slow reader's frames pile up in our bounded queue, not in the transport
            await self.request.writer.drain()
            await asyncio.sleep(0)

    async def _cut_off(self) -> None:
        """``drop_after``: the link goes dark and is aborted once the client has missed a data frame.

        Aborting at once let a client that reconnects at once (a fully jittered backoff can draw ~0)
        subscribe again before the tape played its next trade: it missed nothing, and the fault was
        no fault. Dark, the link sends nothing more of its own (no frame, control reply or server
        ping; only a client's ping is still answered, by :meth:`run`); :meth:`enqueue` aborts
        it when the next data frame is played for it, or now if one is already queued behind the
        limit (it is discarded). At the tape's end there is nothing left to miss: aborted then.
        """
        self.dark = True
        if not any(data for _, _, data in self.queue):
            await self.host.tape.finished_event.wait()
        self.drop("drop_after", abort=True)

    async def _watchdog(self) -> None:
        cfg = self.config
        loop = self.loop
        next_ping = self.opened + cfg.ping_interval_s
        end_of_life = self.opened + cfg.connection_lifetime_s
        shutdown_at = self.opened + cfg.shutdown_after_s if cfg.shutdown_after_s is not None else float("inf")
        while self.closed_reason is None:
            pong_deadline = (
                self.ping_outstanding_since + cfg.pong_timeout_s
                if self.ping_outstanding_since is not None
                else float("inf")
            )
            wake = min(next_ping, pong_deadline, end_of_life, shutdown_at)
            await asyncio.sleep(max(0.0, wake - loop.time()))
            now = loop.time()
            if (
                self.ping_outstanding_since is not None
                and now >= self.ping_outstanding_since + cfg.pong_timeout_s
            ):
                self.drop("pong_timeout")
            elif now >= shutdown_at:
                await self.server_shutdown()
            elif now >= end_of_life:
                self.drop("lifetime")
            elif now >= next_ping:
                if not self.dark:
                    await self.ws.ping(str(self.host.now_us() // 1000).encode())
                    if self.ping_outstanding_since is None:
                        self.ping_outstanding_since = now
                next_ping = now + cfg.ping_interval_s

    async def server_shutdown(self) -> None:
        """Send ``serverShutdown`` now (bypassing the queue and any delay), then close."""
        if self.closed_reason is not None:
            return
        if self.dark:  # a dead link carries no goodbye
            self.drop("drop_after", abort=True)
            return
        now = self.host.now_us()
        event = b'{"e":"serverShutdown","E":%d}' % (now if self.micros else now // 1000)
        with suppress(ConnectionError, RuntimeError):
            await self.ws.send_frame(event, WSMsgType.TEXT)
        self.drop("server_shutdown")

    def _control(self, text: str) -> bytes:
        try:
            request = _CONTROL_DECODER.decode(text)
        except msgspec.DecodeError as exc:
            return _error_frame(3, f"Invalid JSON: {exc}", None)
        if not isinstance(request, dict):
            return _error_frame(3, "Invalid JSON: expected an object", None)
        request_id = request.get("id")
        if not (
            request_id is None
            or (isinstance(request_id, int) and not isinstance(request_id, bool) and request_id >= 0)
            or (isinstance(request_id, str) and len(request_id) <= 36 and request_id.isalnum())
        ):
            return _error_frame(2, "Invalid request: request ID must be an unsigned integer", None)
        method = request.get("method")
        params = request.get("params", [])
        if not isinstance(params, list):
            return _error_frame(2, "Invalid request: params must be an array", request_id)
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            names = [normalise_stream(p) for p in params]
            for raw, name in zip(params, names, strict=True):
                if name is None:
                    return _error_frame(2, f"Invalid request: invalid stream name {raw!r}", request_id)
            if method == "SUBSCRIBE":
                new = [n for n in dict.fromkeys(names) if n is not None and n not in self.streams]
                if len(self.streams) + len(new) > self.config.max_streams:
                    return _error_frame(
                        2,
                        f"Invalid request: too many streams ({len(self.streams) + len(new)} > "
                        f"{self.config.max_streams} per connection)",
                        request_id,
                    )
                self.subscribe(new)
            else:
                for name in names:
                    if name in self.streams:
                        del self.streams[name]
                        self.host.tape.unsubscribe(self, name)
            return encode_json(ControlResponse(id=request_id, result=None))
        if method == "LIST_SUBSCRIPTIONS":
            return encode_json(ControlResponse(id=request_id, result=list(self.streams)))
        if method in ("SET_PROPERTY", "GET_PROPERTY"):
            if not params or params[0] != "combined":
                return _error_frame(0, "Unknown property", request_id)
            if method == "GET_PROPERTY":
                return encode_json({"result": self.combined, "id": request_id})
            if len(params) != 2 or not isinstance(params[1], bool):
                return _error_frame(1, "Invalid value type: expected Boolean", request_id)
            self.combined = params[1]
            return encode_json({"result": None, "id": request_id})
        return _error_frame(2, f"Invalid request: unknown method {method!r}", request_id)

    def subscribe(self, streams: list[str]) -> None:
        for name in streams:
            if name not in self.streams:
                self.streams[name] = None
                self.host.tape.subscribe(self, name)
