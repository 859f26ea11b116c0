"""One WebSocket connection to the exchange's combined streams, kept alive forever.

A :class:`StreamConnection` owns one shard of at most 1024 streams. It reconnects with capped,
fully jittered exponential backoff (reset after a healthy period), watches for stale streams,
and rolls over to a fresh connection on ``serverShutdown`` or before Binance's 24 h limit: the
successor is opened and subscribed *before* the old connection is dropped, so a planned
reconnect loses nothing (duplicates are removed downstream by trade id).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import quote

import aiohttp

from cryptopipe.ingest.pacing import AttemptWindow, TokenBucket
from cryptopipe.ingest.settings import IngestSettings
from cryptopipe.observability import metrics as m
from cryptopipe.runtime import Backoff

logger = logging.getLogger(__name__)

#: Streams are put in the URL while the query stays under this many characters; the rest are
#: SUBSCRIBEd (servers cap the request line, aiohttp's at 8190 bytes).
URL_QUERY_MAX_CHARS = 2000
#: A frame larger than this closes the connection (aiohttp); smaller oversized frames are dead letters.
HARD_MAX_FRAME_BYTES = 16 * 1024 * 1024
_DRAIN_S = 1.0
_DRAIN_QUIET_S = 0.25

CONNECT_ERRORS = (aiohttp.ClientError, OSError, TimeoutError, aiohttp.WSServerHandshakeError)

#: Called for each data frame with its payload, receive time and whether it was a binary frame;
#: returns True on serverShutdown.
FrameCallback = Callable[[bytes | str, int, bool], bool]


def plan_shards(streams: Sequence[str], per_connection: int) -> list[tuple[str, ...]]:
    """Split streams over as few connections as the per-connection limit allows."""
    if per_connection < 1:
        raise ValueError("per_connection must be >= 1")
    unique = list(dict.fromkeys(streams))
    return [tuple(unique[i : i + per_connection]) for i in range(0, len(unique), per_connection)]


def stream_url(
    base_url: str, streams: Sequence[str], *, max_query_chars: int = URL_QUERY_MAX_CHARS
) -> tuple[str, list[str]]:
    """The combined-stream URL carrying as many streams as fit, and the streams left to SUBSCRIBE."""
    in_url: list[str] = []
    length = 0
    for stream in streams:
        cost = len(quote(stream, safe="@")) + 1
        if length + cost > max_query_chars:
            break
        in_url.append(stream)
        length += cost
    query = "/".join(quote(s, safe="@") for s in in_url)
    url = f"{base_url}/stream?timeUnit=MICROSECOND"
    if query:
        url = f"{base_url}/stream?streams={query}&timeUnit=MICROSECOND"
    return url, list(streams[len(in_url) :])


@dataclass
class _Link:
    ws: aiohttp.ClientWebSocketResponse[Literal[False]]
    subscribed: asyncio.Task[None]
    opened_at: float = field(default_factory=time.monotonic)
    closed: bool = False


class StreamConnection:
    """Keeps one shard's streams flowing into ``on_frame`` until cancelled."""

    def __init__(
        self,
        index: int,
        streams: Sequence[str],
        settings: IngestSettings,
        session: aiohttp.ClientSession,
        on_frame: FrameCallback,
        attempts: AttemptWindow,
        *,
        on_reconnect: Callable[[str], None] | None = None,
    ) -> None:
        self.index = index
        self.streams = tuple(streams)
        self.settings = settings
        self.session = session
        self.on_frame = on_frame
        self.attempts = attempts
        self.on_reconnect = on_reconnect
        self.url, self.to_subscribe = stream_url(settings.stream_base_url, self.streams)
        self._backoff = Backoff(settings.backoff_initial_s, settings.backoff_max_s)
        self._failing_since: float | None = None
        self._failures = 0
        self._next_id = 1
        #: Set once every stream of the first connection has been asked for (in the URL or by SUBSCRIBE).
        self.subscribed = asyncio.Event()

    async def run(self) -> None:
        """Connect, read, reconnect; returns only by cancellation."""
        link: _Link | None = None
        reason: str | None = None
        try:
            while True:
                if link is None:
                    if reason is not None:
                        self._count_reconnect(reason)
                    try:
                        link = await self._open()
                    except CONNECT_ERRORS as exc:
                        reason = "connect_failed"
                        self._connect_failed(exc)
                        await asyncio.sleep(self._backoff.next_delay())
                        continue
                    self._connected()
                reason, successor = await self._read(link)
                if time.monotonic() - link.opened_at >= self.settings.healthy_after_s:
                    self._backoff.reset()
                await self._close(link)
                link = successor
                if successor is not None:
                    self._count_reconnect(reason)
                    reason = None
                else:
                    logger.warning(
                        "connection %d to %s ended (%s); reconnecting", self.index, self.url[:120], reason
                    )
                    if reason not in ("server_shutdown", "max_age"):
                        await asyncio.sleep(self._backoff.next_delay())
        finally:
            if link is not None:
                await asyncio.shield(self._close(link))

    # --- one connection ------------------------------------------------------------------
    async def _open(self) -> _Link:
        await self.attempts.acquire()
        async with asyncio.timeout(self.settings.connect_timeout_s):
            ws = await self.session.ws_connect(
                self.url,
                autoping=True,
                heartbeat=None,
                max_msg_size=HARD_MAX_FRAME_BYTES,
                decode_text=False,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=2.0),
            )
        m.CONNECTIONS.inc()
        task = asyncio.create_task(self._subscribe(ws), name=f"ingest-subscribe-{self.index}")
        return _Link(ws, task)

    async def _subscribe(self, ws: aiohttp.ClientWebSocketResponse[Literal[False]]) -> None:
        """SUBSCRIBE the streams that did not fit in the URL, within the control-message rate."""
        bucket = TokenBucket(self.settings.control_messages_per_second, capacity=1.0)
        batch = self.settings.subscribe_batch
        for start in range(0, len(self.to_subscribe), batch):
            await bucket.acquire()
            params = self.to_subscribe[start : start + batch]
            request = {"method": "SUBSCRIBE", "params": params, "id": self._next_id}
            self._next_id += 1
            try:
                await ws.send_str(json.dumps(request, separators=(",", ":")))
            except (*CONNECT_ERRORS, ConnectionResetError) as exc:
                logger.debug("connection %d: SUBSCRIBE not sent: %s", self.index, exc)
                return
            logger.debug(
                "connection %d: SUBSCRIBE %d streams (id %d)", self.index, len(params), request["id"]
            )
        self.subscribed.set()

    async def _close(self, link: _Link) -> None:
        if link.closed:
            return
        link.closed = True
        link.subscribed.cancel()
        m.CONNECTIONS.dec()
        try:
            await link.ws.close()
        except CONNECT_ERRORS as exc:
            logger.debug("closing connection %d: %s", self.index, exc)

    async def _read(self, link: _Link) -> tuple[str, _Link | None]:
        """Feed frames until the connection ends; returns why, and a successor on rollover.

        One timeout covers many frames: it is armed for the earliest moment the connection could
        be stale or due for retirement, and re-armed only when it fires early (frames kept coming).
        Arming one per frame (``asyncio.timeout`` around every ``receive``) cost more CPU than
        parsing the frame. Cancelling a ``receive`` that waits loses nothing: aiohttp leaves an
        arrived frame in its buffer for the next one.
        """
        ws = link.ws
        settings = self.settings
        retire_at = link.opened_at + settings.max_connection_age_s
        last_frame = time.monotonic()
        while True:
            now = time.monotonic()
            if now >= retire_at:
                return await self._rollover(link, "max_age")
            if now - last_frame >= settings.stale_after_s:
                logger.warning(
                    "connection %d: no frame for %.1f s; reconnecting", self.index, settings.stale_after_s
                )
                return "stale", None
            ended: str | None = None
            try:
                async with asyncio.timeout(min(last_frame + settings.stale_after_s, retire_at) - now):
                    while ended is None:
                        msg = await ws.receive()
                        receive_time_us = time.time_ns() // 1000
                        if msg.type is aiohttp.WSMsgType.TEXT or msg.type is aiohttp.WSMsgType.BINARY:
                            last_frame = time.monotonic()
                            if self.on_frame(msg.data, receive_time_us, msg.type is aiohttp.WSMsgType.BINARY):
                                ended = "server_shutdown"
                        elif msg.type is aiohttp.WSMsgType.ERROR:
                            logger.warning("connection %d: WebSocket error: %s", self.index, msg.data)
                            return "error", None
                        else:
                            return "closed", None
            except TimeoutError:
                continue  # stale, due for retirement, or neither yet: the checks above decide
            logger.info("connection %d: serverShutdown received; rolling over", self.index)
            return await self._rollover(link, "server_shutdown")

    async def _rollover(self, old: _Link, reason: str) -> tuple[str, _Link | None]:
        """Open the successor, let it subscribe, then drain what the old one still holds."""
        try:
            new = await self._open()
        except CONNECT_ERRORS as exc:
            self._connect_failed(exc)
            return reason, None
        try:
            await self._hand_over(old, new)
        except BaseException:
            await asyncio.shield(self._close(new))
            raise
        return reason, new

    async def _hand_over(self, old: _Link, new: _Link) -> None:
        try:
            async with asyncio.timeout(self.settings.connect_timeout_s):
                await asyncio.shield(new.subscribed)
        except TimeoutError:
            logger.warning("connection %d: successor still subscribing after rollover", self.index)
        drain_until = time.monotonic() + _DRAIN_S
        while (left := drain_until - time.monotonic()) > 0:
            try:
                async with asyncio.timeout(min(left, _DRAIN_QUIET_S)):
                    msg = await old.ws.receive()
            except TimeoutError:
                break
            if msg.type is not aiohttp.WSMsgType.TEXT and msg.type is not aiohttp.WSMsgType.BINARY:
                break
            self.on_frame(msg.data, time.time_ns() // 1000, msg.type is aiohttp.WSMsgType.BINARY)

    # --- bookkeeping ---------------------------------------------------------------------
    def _count_reconnect(self, reason: str) -> None:
        m.RECONNECTS.labels(reason=reason).inc()
        if self.on_reconnect is not None:
            self.on_reconnect(reason)

    def _connect_failed(self, exc: BaseException) -> None:
        self._failures += 1
        if self._failing_since is None:
            self._failing_since = time.monotonic()
            logger.warning(
                "cannot connect to the exchange at %s (%s: %s); retrying with backoff up to %.0f s",
                self.url[:120],
                type(exc).__name__,
                exc,
                self.settings.backoff_max_s,
            )
        else:
            logger.debug("connection %d attempt %d failed: %s", self.index, self._failures, exc)

    def _connected(self) -> None:
        if self._failing_since is not None:
            logger.info(
                "connection %d established after %d failed attempts (%.1f s)",
                self.index,
                self._failures,
                time.monotonic() - self._failing_since,
            )
        else:
            logger.info("connection %d established (%d streams)", self.index, len(self.streams))
        self._failing_since = None
        self._failures = 0
