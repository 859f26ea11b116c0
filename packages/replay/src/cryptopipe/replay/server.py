"""The replay exchange's network side: Binance Spot's WebSocket streams and REST market data.

WebSocket: ``/stream?streams=a/b&timeUnit=MICROSECOND`` (combined wrapper) and ``/ws/<stream>[/...]``
(raw payloads), with SUBSCRIBE / UNSUBSCRIBE / LIST_SUBSCRIPTIONS / SET_PROPERTY / GET_PROPERTY,
server pings, the 5 messages/s and 1024 streams limits, serverShutdown and a 24 h lifetime.
REST: ``/api/v3/ping``, ``/api/v3/time``, ``/api/v3/exchangeInfo`` and ``/api/v3/aggTrades``.

The serverShutdown event is sent unwrapped (``{"e":"serverShutdown","E":...}``) on both endpoint
kinds, with ``E`` in the connection's time unit, and the connection is closed right after it.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import msgspec
from aiohttp import WSMsgType, web

from cryptopipe.replay.config import ReplayConfig
from cryptopipe.replay.sources import build_source, symbol_spec
from cryptopipe.replay.tape import HistoryKind, ReplayStats, Tape, wall_clock_us
from cryptopipe.schemas.binance import (
    AggTradeEvent,
    ControlResponse,
    ErrorBody,
    RestAggTrade,
    ServerTime,
    TradeEvent,
    encode_json,
)

log = logging.getLogger(__name__)

_STREAM_NAME = re.compile(r"^(?:[A-Za-z0-9]+@[A-Za-z0-9_]+(?:@[A-Za-z0-9_]+)?|![A-Za-z0-9_]+(?:@arr)?)$")
_QUOTES = ("USDT", "USDC", "FDUSD", "BUSD", "TUSD", "DAI", "BTC", "ETH", "BNB", "EUR", "TRY", "BRL", "JPY")
_ONE_HOUR_MS = 3_600_000
_CONTROL_DECODER = msgspec.json.Decoder()
_BATCH_BYTES = 256 * 1024


def text_frame(payload: bytes) -> bytes:
    """An unmasked, unfragmented WebSocket text frame (RFC 6455 section 5.2), as servers send."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return b"\x81\x7e" + n.to_bytes(2, "big") + payload
    return b"\x81\x7f" + n.to_bytes(8, "big") + payload


def normalise_stream(name: str) -> str | None:
    """``BTCUSDT@trade`` -> ``btcusdt@trade`` (symbols are lower-case); None if not a stream name."""
    if not isinstance(name, str) or not _STREAM_NAME.match(name):
        return None
    symbol, sep, rest = name.partition("@")
    return symbol.lower() + sep + rest if not name.startswith("!") else name


def _parse_time_unit(value: str | None) -> bool | None:
    """``MICROSECOND`` -> True, ``MILLISECOND``/absent -> False, anything else -> None."""
    if value is None or value == "":
        return False
    upper = value.upper()
    if upper == "MICROSECOND":
        return True
    if upper == "MILLISECOND":
        return False
    return None


def _error_frame(code: int, msg: str, request_id: object) -> bytes:
    return encode_json({"error": ErrorBody(code=code, msg=msg), "id": request_id})


class Connection:
    """One client WebSocket: its subscriptions, its bounded send queue and its timers."""

    def __init__(
        self,
        exchange: ReplayExchange,
        request: web.Request,
        ws: web.WebSocketResponse,
        *,
        combined: bool,
        micros: bool,
    ) -> None:
        self.exchange = exchange
        self.config = exchange.config
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

    # --- what the tape calls -------------------------------------------------------------------
    def enqueue(self, payload: bytes, data: bool = True) -> bool:
        if self.closed_reason is not None:
            return True
        if self.dark:
            if data:  # played for this client, which will never get it: now the drop is a loss
                self.drop("drop_after", abort=True)
            return True
        if len(self.queue) >= self.cap:
            return False
        self.queue.append((self.loop.time(), payload, data))
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
        stats = self.exchange.stats
        stats.dropped_connections += 1
        stats.close_reasons[reason] = stats.close_reasons.get(reason, 0) + 1
        if reason == "slow_consumer":
            stats.slow_consumers += 1
            log.warning("closing slow consumer %s (%d frames queued)", self.request.remote, len(self.queue))
        else:
            log.info("closing connection from %s: %s", self.request.remote, reason)
        self.exchange.tape.detach(self, list(self.streams))
        self.queue.clear()
        self._room.set()
        self._wakeup.set()
        self.exchange.spawn(self._close(reason, abort))

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

    # --- the connection's tasks ----------------------------------------------------------------
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
            self.exchange.tape.detach(self, list(self.streams))

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
        delay = self.config.delay_ms / 1000
        drop_after = self.config.drop_after
        stats = self.exchange.stats
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
                wait = queue[0][0] + delay - self.loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                    continue
            if transport is None or transport.is_closing():
                return
            due = self.loop.time() - delay
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
            await self.exchange.tape.finished_event.wait()
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
                    await self.ws.ping(str(self.exchange.now_us() // 1000).encode())
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
        now = self.exchange.now_us()
        event = b'{"e":"serverShutdown","E":%d}' % (now if self.micros else now // 1000)
        with suppress(ConnectionError, RuntimeError):
            await self.ws.send_frame(event, WSMsgType.TEXT)
        self.drop("server_shutdown")

    # --- control messages ----------------------------------------------------------------------
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
                        self.exchange.tape.unsubscribe(self, name)
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
                self.exchange.tape.subscribe(self, name)


class RestError(Exception):
    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.status = status


def _json(body: bytes, status: int = 200) -> web.Response:
    return web.Response(body=body, status=status, content_type="application/json")


def _int_param(request: web.Request, name: str) -> int | None:
    value = request.query.get(name)
    if value is None or value == "":
        return None
    if not value.isdigit() or len(value) > 20:
        raise RestError(
            -1100, f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'."
        )
    return int(value)


def _rest_micros(request: web.Request) -> bool:
    micros = _parse_time_unit(request.headers.get("X-MBX-TIME-UNIT"))
    if micros is None:
        raise RestError(-1100, "Invalid X-MBX-TIME-UNIT header; expected MILLISECOND or MICROSECOND.")
    return micros


def split_symbol(symbol: str) -> tuple[str, str]:
    """``BTCUSDT`` -> (``BTC``, ``USDT``) by the longest known quote asset."""
    for quote in sorted(_QUOTES, key=len, reverse=True):
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[: -len(quote)], quote
    return symbol[:-4] or symbol, symbol[-4:]


def _format8(value: str) -> str:
    return f"{float(value):.8f}"


class ReplayExchange:
    """A local Binance Spot stand-in: ``async with ReplayExchange(cfg) as ex: ... ex.ws_url``."""

    def __init__(self, config: ReplayConfig | None = None) -> None:
        self.config = config or ReplayConfig()
        self.stats = ReplayStats()
        self.now_us = wall_clock_us(self.config.clock_offset_ms)
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._tape: Tape | None = None
        self._tape_task: asyncio.Task[None] | None = None
        self._connections: set[Connection] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    # --- public surface ------------------------------------------------------------------------
    @property
    def tape(self) -> Tape:
        if self._tape is None:
            raise RuntimeError("the replay exchange is not started")
        return self._tape

    def _url(self, scheme: str) -> str:
        host = self.config.host
        return f"{scheme}://[{host}]:{self.port}" if ":" in host else f"{scheme}://{host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return self._url("ws")

    @property
    def rest_url(self) -> str:
        return self._url("http")

    @property
    def symbols(self) -> frozenset[str]:
        return self.tape.symbols

    def history(self, symbol: str, kind: HistoryKind = "aggTrade") -> list[AggTradeEvent] | list[TradeEvent]:
        """What the tape has played for ``symbol`` so far (E/T in µs), as REST would serve it.

        ``kind="aggTrade"`` (default) is the REST aggTrades history (derived 1:1 from trades when the
        source has none); ``kind="trade"`` lists the ``@trade`` events.
        """
        return self.tape.history(symbol, kind)

    async def wait_finished(self, timeout_s: float | None = None) -> bool:
        """Wait until the tape has played to its end (True) or ``timeout_s`` passed (False)."""
        try:
            await asyncio.wait_for(self.tape.finished_event.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def server_shutdown(self) -> None:
        """Send ``serverShutdown`` to every open connection and close them (new ones are accepted)."""
        await asyncio.gather(*(conn.server_shutdown() for conn in tuple(self._connections)))

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- lifecycle -----------------------------------------------------------------------------
    async def __aenter__(self) -> ReplayExchange:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        source = await asyncio.to_thread(build_source, self.config)
        await asyncio.to_thread(lambda: (source.symbols, source.agg_symbols))
        self._tape = Tape(self.config, source, self.stats, self.now_us)
        app = web.Application(middlewares=[self._delay_middleware])
        app.router.add_get("/stream", self._ws_handler)
        app.router.add_get("/ws", self._ws_handler)
        app.router.add_get("/ws/{tail:.*}", self._ws_handler)
        app.router.add_get("/api/v3/ping", self._ping)
        app.router.add_get("/api/v3/time", self._time)
        app.router.add_get("/api/v3/exchangeInfo", self._exchange_info)
        app.router.add_get("/api/v3/aggTrades", self._agg_trades)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self._tape_task = asyncio.create_task(self._tape.run())
        log.info("replay exchange on %s (source %s)", self.ws_url, source.name)

    async def aclose(self) -> None:
        if self._tape_task is not None:
            self._tape_task.cancel()
            await asyncio.gather(self._tape_task, return_exceptions=True)
        await self.server_shutdown()
        if self._tasks:
            await asyncio.gather(*tuple(self._tasks), return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- WebSocket -----------------------------------------------------------------------------
    async def _ws_handler(self, request: web.Request) -> web.StreamResponse:
        combined = request.path.startswith("/stream")
        micros = _parse_time_unit(request.query.get("timeUnit"))
        if micros is None:
            return _json(encode_json(ErrorBody(code=-1100, msg="Invalid timeUnit.")), 400)
        if combined:
            raw_streams = [s for s in request.query.get("streams", "").split("/") if s]
        else:
            raw_streams = [s for s in request.match_info.get("tail", "").split("/") if s]
        streams = [normalise_stream(s) for s in raw_streams]
        bad = [raw for raw, name in zip(raw_streams, streams, strict=True) if name is None]
        if bad:
            return _json(encode_json(ErrorBody(code=-1100, msg=f"Invalid stream name {bad[0]!r}.")), 400)
        wanted = [s for s in dict.fromkeys(streams) if s is not None]
        if len(wanted) > self.config.max_streams:
            msg = f"Too many streams ({len(wanted)} > {self.config.max_streams} per connection)."
            return _json(encode_json(ErrorBody(code=-1100, msg=msg)), 400)
        ws = web.WebSocketResponse(autoping=False, compress=False, max_msg_size=1 << 20)
        await ws.prepare(request)
        conn = Connection(self, request, ws, combined=combined, micros=micros)
        self.stats.connections += 1
        self.stats.open_connections += 1
        self._connections.add(conn)
        self.tape.attach(conn)
        conn.subscribe(wanted)
        try:
            await conn.run()
        finally:
            self._connections.discard(conn)
            self.stats.open_connections -= 1
        return ws

    # --- REST ----------------------------------------------------------------------------------
    @web.middleware
    async def _delay_middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        rest = request.path.startswith("/api/")
        delay = self.config.delay_ms / 1000 if rest else 0.0
        if delay:
            await asyncio.sleep(delay)
        try:
            response = await handler(request)
        except RestError as exc:
            response = _json(encode_json(ErrorBody(code=exc.code, msg=exc.msg)), exc.status)
        if delay:
            await asyncio.sleep(delay)
        return response

    async def _ping(self, request: web.Request) -> web.Response:
        return _json(b"{}")

    async def _time(self, request: web.Request) -> web.Response:
        now = self.now_us()
        return _json(encode_json(ServerTime(serverTime=now if _rest_micros(request) else now // 1000)))

    def _symbol_param(self, request: web.Request, *, required: bool) -> str | None:
        symbol = request.query.get("symbol")
        if not symbol:
            if required:
                raise RestError(
                    -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."
                )
            return None
        symbol = symbol.upper()
        if symbol not in self.tape.symbols:
            raise RestError(-1121, "Invalid symbol.")
        return symbol

    async def _exchange_info(self, request: web.Request) -> web.Response:
        micros = _rest_micros(request)
        chosen = sorted(self.tape.symbols)
        one = self._symbol_param(request, required=False)
        if one is not None:
            chosen = [one]
        elif "symbols" in request.query:
            try:
                listed = msgspec.json.decode(request.query["symbols"], type=list[str])
            except msgspec.MsgspecError:
                raise RestError(-1100, "Illegal characters found in parameter 'symbols'.") from None
            unknown = [s for s in listed if s.upper() not in self.tape.symbols]
            if unknown:
                raise RestError(-1121, "Invalid symbol.")
            chosen = [s.upper() for s in listed]
        now = self.now_us()
        body = {
            "timezone": "UTC",
            "serverTime": now if micros else now // 1000,
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
                {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
            ],
            "exchangeFilters": [],
            "symbols": [self._symbol_info(s) for s in chosen],
        }
        return _json(encode_json(body))

    @staticmethod
    def _symbol_info(symbol: str) -> dict[str, Any]:
        base, quote = split_symbol(symbol)
        spec = symbol_spec(symbol)
        return {
            "symbol": symbol,
            "status": "TRADING",
            "baseAsset": base,
            "baseAssetPrecision": 8,
            "quoteAsset": quote,
            "quotePrecision": 8,
            "quoteAssetPrecision": 8,
            "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
            "icebergAllowed": True,
            "ocoAllowed": True,
            "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": False,
            "filters": [
                {
                    "filterType": "PRICE_FILTER",
                    "minPrice": _format8(spec.tick),
                    "maxPrice": "1000000.00000000",
                    "tickSize": _format8(spec.tick),
                },
                {
                    "filterType": "LOT_SIZE",
                    "minQty": _format8(spec.lot),
                    "maxQty": "9000.00000000",
                    "stepSize": _format8(spec.lot),
                },
            ],
            "permissions": [],
            "permissionSets": [["SPOT"]],
        }

    async def _agg_trades(self, request: web.Request) -> web.Response:
        """``GET /api/v3/aggTrades``: Binance's parameters, limits and error codes."""
        micros = _rest_micros(request)
        symbol = self._symbol_param(request, required=True)
        assert symbol is not None
        from_id = _int_param(request, "fromId")
        start = _int_param(request, "startTime")
        end = _int_param(request, "endTime")
        limit = _int_param(request, "limit")
        if limit is None:
            limit = 500
        if not 1 <= limit <= 1000:
            raise RestError(-1130, "Data sent for parameter 'limit' is not valid (1..1000).")
        if from_id is not None and (start is not None or end is not None):
            raise RestError(-1128, "Combination of optional parameters invalid.")
        hour = _ONE_HOUR_MS * (1000 if micros else 1)
        if start is not None and end is not None:
            if end - start > hour:
                raise RestError(-1127, "More than 1 hours between startTime and endTime.")
        elif start is not None:
            end = start + hour
        elif end is not None:
            start = max(0, end - hour)
        scale = 1 if micros else 1000
        start_us = start * scale if start is not None else None
        end_us = end * scale + (scale - 1) if end is not None else None
        hist = self.tape.histories.get(symbol)
        found = (
            hist.query(from_id=from_id, start_us=start_us, end_us=end_us, limit=limit)
            if hist is not None
            else []
        )
        items = [
            RestAggTrade(a=a.a, p=a.p, q=a.q, f=a.f, l=a.l, T=a.T if micros else a.T // 1000, m=a.m, M=a.M)
            for a in found
        ]
        return _json(encode_json(items))


# --- thread helper ------------------------------------------------------------------------------


class ThreadedExchange:
    """A :class:`ReplayExchange` running on its own event loop thread, for synchronous code."""

    def __init__(self, config: ReplayConfig) -> None:
        self.config = config
        self._exchange: ReplayExchange | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._finished = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="replay-exchange", daemon=True)

    @property
    def exchange(self) -> ReplayExchange:
        if self._exchange is None:
            raise RuntimeError("the replay exchange is not started")
        return self._exchange

    @property
    def ws_url(self) -> str:
        return self.exchange.ws_url

    @property
    def rest_url(self) -> str:
        return self.exchange.rest_url

    @property
    def port(self) -> int:
        return self.exchange.port

    @property
    def stats(self) -> ReplayStats:
        return self.exchange.stats

    def _call(self, fn: Callable[[], Any]) -> Any:
        assert self._loop is not None

        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=30)

    def history(self, symbol: str, kind: HistoryKind = "aggTrade") -> list[AggTradeEvent] | list[TradeEvent]:
        return self._call(lambda: self.exchange.history(symbol, kind))  # type: ignore[no-any-return]

    def wait_finished(self, timeout_s: float | None = None) -> bool:
        """Block until the tape has played to its end (True) or ``timeout_s`` passed (False)."""
        return self._finished.wait(timeout_s)

    def server_shutdown(self) -> None:
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(self.exchange.server_shutdown(), self._loop).result(timeout=30)

    def start(self) -> ThreadedExchange:
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            exchange = ReplayExchange(self.config)
            await exchange.start()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._exchange = exchange
        exchange.tape.on_finished.append(self._finished.set)
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await exchange.aclose()


@contextmanager
def run_in_thread(config: ReplayConfig | None = None) -> Iterator[ThreadedExchange]:
    """``with run_in_thread(cfg) as ex:`` a started exchange on a background thread, stopped on exit."""
    handle = ThreadedExchange(config or ReplayConfig()).start()
    try:
        yield handle
    finally:
        handle.stop()
