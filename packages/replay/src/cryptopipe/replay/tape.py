"""The exchange tape: plays the source once, in (scaled) real time, to whoever is subscribed.

Like a real exchange, a client receives only what happens while it is subscribed; what it missed
stays available through the REST aggTrades history, which is exactly what was played (same ids,
prices and times under the active clock mode).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import msgspec

from cryptopipe.replay.config import ReplayConfig
from cryptopipe.replay.depth_feed import DepthFeed
from cryptopipe.replay.errors import ReplayError
from cryptopipe.replay.history import HistoryBounds, HistoryUsage, SymbolHistory, usage
from cryptopipe.replay.sources.base import (
    DepthRecord,
    DepthSnapshotRecord,
    RawFrame,
    SourceEvent,
    TradeRecord,
)
from cryptopipe.replay.sources.merged import MergedSource
from cryptopipe.schemas.binance import AggTradeEvent, TradeEvent, encode_json

log = logging.getLogger(__name__)

HistoryKind = Literal["aggTrade", "trade"]


@dataclass
class ReplayStats:
    """Counters of one replay exchange (read them from any thread; only the server writes them)."""

    frames_sent: int = 0
    """WebSocket frames sent, to all clients."""
    trades_played: int = 0
    """Trades the tape played (each goes to every subscriber of its stream)."""
    passthrough_played: int = 0
    """Recorded depth/bookTicker frames played verbatim (synthetic bookTicker frames too)."""
    depth_events_played: int = 0
    """Synthetic depth diffs played (both intervals), and recorded REST snapshots."""
    depth_events_dropped: int = 0
    """Depth events not sent by ``depth_drop_every`` / ``depth_drop_update_id`` (once per event; a
    1 s diff is one event under its two names, ``@depth`` and ``@depth@1000ms``)."""
    book_gaps: int = 0
    """Gaps in a played depth stream: the symbol's REST book is unknown until the next snapshot."""
    depth_snapshots_served: int = 0
    """``/api/v3/depth`` answers with a book (stale ones included)."""
    depth_snapshots_failed: int = 0
    """``/api/v3/depth`` answered 503: ``depth_snapshot_fail``, or no book known yet."""
    depth_snapshots_stale: int = 0
    """``/api/v3/depth`` answered with a stale book (``depth_snapshot_stale``)."""
    rest_weight_refused: int = 0
    """REST requests refused with 429: over ``rest_weight_limit``."""
    connections: int = 0
    """WebSocket connections accepted since start."""
    open_connections: int = 0
    """WebSocket connections open now."""
    dropped_connections: int = 0
    """Connections the server closed on its own, for any reason (breakdown in ``close_reasons``)."""
    slow_consumers: int = 0
    """Of those, clients closed as slow consumers (their frame queue stayed full)."""
    close_reasons: dict[str, int] = field(default_factory=dict)
    skipped_lines: int = 0
    """Source lines that are valid but no stream frame (a REST snapshot, a CSV header): skipped."""
    bad_lines: int = 0
    """Malformed source lines skipped under ``skip_bad_lines`` (without it the tape stops)."""
    loops: int = 0
    """Times the source restarted from its beginning (``loop``)."""
    started: bool = False
    finished: bool = False
    error: str | None = None
    """Why the tape stopped early (a bad line, an unreadable file), or None."""


class Subscriber(Protocol):
    """What the tape needs from a WebSocket connection."""

    micros: bool
    combined: bool

    def enqueue(self, payload: bytes) -> bool: ...

    def full(self) -> bool: ...

    async def wait_room(self, timeout_s: float) -> bool: ...

    def drop(self, reason: str) -> None: ...


@dataclass
class _LoopShift:
    """How much a ``--loop`` pass moves ids and (original-clock) times, per symbol."""

    agg_ids: dict[str, int] = field(default_factory=dict)
    trade_ids: dict[str, int] = field(default_factory=dict)
    time_us: int = 0


class Tape:
    """Plays the source and fans each event out to the subscribers of its streams."""

    YIELD_EVERY = 128

    def __init__(
        self,
        config: ReplayConfig,
        source: MergedSource,
        stats: ReplayStats,
        now_us: Callable[[], int],
    ) -> None:
        self.config = config
        self.source = source
        self.stats = stats
        self.now_us = now_us
        self.symbols = source.symbols
        self.agg_symbols = source.agg_symbols
        self.inactive_symbols = source.inactive_symbols
        self.history_bounds = HistoryBounds(config.history_limit, config.history_seconds)
        self.histories: dict[str, SymbolHistory] = {
            s: SymbolHistory(self.history_bounds) for s in self.symbols
        }
        self.subs: dict[str, set[Subscriber]] = {}
        self.connections: set[Subscriber] = set()
        self.start_event = asyncio.Event()
        # Per symbol, (recorded trade time, re-stamped trade time) of the last live-clock trade.
        self._last_trade_time: dict[str, tuple[int, int]] = {}
        self.finished_event = asyncio.Event()
        self.on_finished: list[Callable[[], None]] = []
        self.depth = DepthFeed(config, stats, self._fanout, now_us)
        if not config.start_on_subscribe:
            self.start_event.set()

    # --- subscriptions -------------------------------------------------------------------------
    def subscribe(self, sub: Subscriber, stream: str) -> None:
        self.subs.setdefault(stream, set()).add(sub)
        self.depth.on_subscribe(stream)
        self.start_event.set()

    def unsubscribe(self, sub: Subscriber, stream: str) -> None:
        subs = self.subs.get(stream)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self.subs[stream]

    def attach(self, sub: Subscriber) -> None:
        self.connections.add(sub)

    def detach(self, sub: Subscriber, streams: list[str]) -> None:
        self.connections.discard(sub)
        for stream in streams:
            self.unsubscribe(sub, stream)

    # --- playing -------------------------------------------------------------------------------
    def history(self, symbol: str, kind: HistoryKind = "aggTrade") -> list[AggTradeEvent] | list[TradeEvent]:
        hist = self.histories.get(symbol.upper())
        if hist is None:
            return []
        return list(hist.aggs) if kind == "aggTrade" else list(hist.trades)

    def history_usage(self) -> HistoryUsage:
        """What the REST histories hold now (entries, estimated bytes) and what they cut."""
        return usage(self.histories)

    async def run(self) -> None:
        cancelled = False
        try:
            await self.start_event.wait()
            self.stats.started = True
            log.info(
                "tape started: %s at speed %s, clock %s",
                self.source.name,
                self.config.speed,
                self.config.clock,
            )
            await self._play_all()
        except ReplayError as exc:
            self.stats.error = str(exc)
            log.error("tape stopped: %s", exc)
        except Exception as exc:  # a bug: record it where tests and the CLI look, then let it surface
            self.stats.error = f"internal error: {exc!r}"
            log.exception("tape crashed")
            raise
        except asyncio.CancelledError:
            cancelled = True  # the exchange is closing: the tape did not reach its end
            raise
        finally:
            self._update_line_counts()
            if not cancelled and not self.stats.finished:
                self.stats.finished = True
                self.finished_event.set()
                for callback in self.on_finished:
                    callback()
                log.info(
                    "tape finished: %d trades played, %d frames sent (a trade goes out once to each "
                    "client subscribed to its stream: none when no client is)",
                    self.stats.trades_played,
                    self.stats.frames_sent,
                )

    def _update_line_counts(self) -> None:
        self.stats.skipped_lines, self.stats.bad_lines = self.source.line_counts()

    async def _play_all(self) -> None:
        loop = asyncio.get_running_loop()
        speed = float(self.config.speed)
        paced = self.config.paced
        shift = _LoopShift()
        pass_no = 0
        since_yield = 0
        while True:
            first_pace: int | None = None
            wall0 = loop.time()
            extent = _Extent()
            for event in self._events(shift, extent):
                if paced:
                    if first_pace is None:
                        first_pace, wall0 = event.pace_ns, loop.time()
                    wait = wall0 + (event.pace_ns - first_pace) / 1e9 / speed - loop.time()
                    if wait > 0.0005:
                        await asyncio.sleep(wait)
                        since_yield = 0
                else:
                    await self._wait_for_room()
                since_yield += 1
                if since_yield >= self.YIELD_EVERY:
                    since_yield = 0
                    self._update_line_counts()
                    await asyncio.sleep(0)
                self._play(event)
            pass_no += 1
            if not self.config.loop or extent.empty:
                return
            self.stats.loops = pass_no
            shift = extent.next_shift(shift)
            log.debug("tape looping (pass %d)", pass_no + 1)
            await asyncio.sleep(0)

    def _events(self, shift: _LoopShift, extent: _Extent) -> Iterator[SourceEvent]:
        if not self.config.loop:
            yield from self.source.events()
            return
        for event in self.source.events():
            if isinstance(event, TradeRecord):
                extent.see(event)
                if shift.time_us or shift.agg_ids or shift.trade_ids:
                    event = shift_record(event, shift)
            yield event

    async def _wait_for_room(self) -> None:
        """At ``speed=max`` go at the pace of the slowest subscriber, dropping one that stalls."""
        for sub in tuple(self.connections):
            if sub.full() and not await sub.wait_room(self.config.slow_client_timeout_s):
                sub.drop("slow_consumer")

    def _play(self, event: SourceEvent) -> None:
        if isinstance(event, RawFrame):
            self.stats.passthrough_played += 1
            if not self.depth.play_raw(event):
                self._fanout(event.stream, raw=event.data)
            return
        if isinstance(event, DepthRecord | DepthSnapshotRecord):
            self.stats.depth_events_played += 1
            if isinstance(event, DepthRecord):
                self.depth.play_record(event)
            else:
                self.depth.play_snapshot(event)
            return
        self.stats.trades_played += 1
        if self.config.clock == "live":
            event_us = self.now_us()
            trade_us = event_us - max(0, event.event_time_us - event.trade_time_us)
            # Re-stamping keeps the recording's order of trade times: a trade that was not earlier
            # than the previous one in the file is not earlier after re-stamping either (varying
            # E-T gaps must not invent out-of-order trades); one that was late stays late.
            last = self._last_trade_time.get(event.symbol)
            if last is not None and event.trade_time_us >= last[0]:
                trade_us = max(trade_us, last[1])
            self._last_trade_time[event.symbol] = (event.trade_time_us, trade_us)
        else:
            event_us, trade_us = event.event_time_us, event.trade_time_us
        symbol = event.symbol
        hist = self.histories.get(symbol)
        if hist is None:
            hist = self.histories[symbol] = SymbolHistory(self.history_bounds)
        lower = symbol.lower()
        # What a trade and an aggTrade event have in common; each has ids of its own.
        common: dict[str, Any] = {
            "E": event_us,
            "s": symbol,
            "p": event.price,
            "q": event.qty,
            "T": trade_us,
            "m": event.buyer_is_maker,
            "M": event.best_match,
        }
        if event.kind == "trade":
            trade = TradeEvent(t=event.id, **common)
            hist.add_trade(trade)
            self._fanout(lower + "@trade", render=_renderer(trade))
            if symbol in self.agg_symbols:
                return
        agg = AggTradeEvent(a=event.id, f=event.first_id, l=event.last_id, **common)
        hist.add_agg(agg)
        self._fanout(lower + "@aggTrade", render=_renderer(agg))

    def _fanout(
        self,
        stream: str,
        *,
        raw: bytes | None = None,
        render: Callable[[bool], bytes] | None = None,
    ) -> None:
        """Send one payload to the stream's subscribers, if it has any: ``raw`` as is, or what
        ``render(micros)`` makes of the event in each subscriber's time unit."""
        subs = self.subs.get(stream)
        if not subs:
            return
        data_by_unit: dict[bool, bytes] = {}
        wrapped: dict[bool, bytes] = {}
        for sub in tuple(subs):
            if raw is not None:
                data = raw
            else:
                assert render is not None
                cached = data_by_unit.get(sub.micros)
                if cached is None:
                    cached = data_by_unit[sub.micros] = render(sub.micros)
                data = cached
            if sub.combined:
                payload = wrapped.get(sub.micros)
                if payload is None:
                    payload = wrapped[sub.micros] = b'{"stream":"%s","data":%s}' % (stream.encode(), data)
            else:
                payload = data
            if not sub.enqueue(payload):
                sub.drop("slow_consumer")


def _renderer(event: TradeEvent | AggTradeEvent) -> Callable[[bool], bytes]:
    def render(micros: bool) -> bytes:
        return encode_json(event if micros else to_millis(event))

    return render


def to_millis(event: TradeEvent | AggTradeEvent) -> TradeEvent | AggTradeEvent:
    """The same event with ``E``/``T`` in milliseconds (the tape keeps microseconds)."""
    return msgspec.structs.replace(event, E=event.E // 1000, T=event.T // 1000)


def shift_record(record: TradeRecord, shift: _LoopShift) -> TradeRecord:
    agg_shift = shift.agg_ids.get(record.symbol, 0)
    trade_shift = shift.trade_ids.get(record.symbol, 0)
    id_shift = trade_shift if record.kind == "trade" else agg_shift
    return dataclasses.replace(
        record,
        id=record.id + id_shift,
        first_id=record.first_id + trade_shift,
        last_id=record.last_id + trade_shift,
        trade_time_us=record.trade_time_us + shift.time_us,
        event_time_us=record.event_time_us + shift.time_us,
    )


class _Extent:
    """Id and time ranges seen in one pass, to shift the next ``--loop`` pass past them."""

    def __init__(self) -> None:
        self.empty = True
        self.agg: dict[str, tuple[int, int]] = {}
        self.trade: dict[str, tuple[int, int]] = {}
        self.t_min = 2**63
        self.t_max = -1

    def see(self, record: TradeRecord) -> None:
        self.empty = False
        if record.kind == "aggTrade":
            lo, hi = self.agg.get(record.symbol, (record.id, record.id))
            self.agg[record.symbol] = (min(lo, record.id), max(hi, record.id))
        lo, hi = self.trade.get(record.symbol, (record.first_id, record.last_id))
        self.trade[record.symbol] = (min(lo, record.first_id), max(hi, record.last_id))
        self.t_min = min(self.t_min, record.trade_time_us)
        self.t_max = max(self.t_max, record.event_time_us)

    def next_shift(self, previous: _LoopShift) -> _LoopShift:
        agg = {s: previous.agg_ids.get(s, 0) + hi - lo + 1 for s, (lo, hi) in self.agg.items()}
        trade = {s: previous.trade_ids.get(s, 0) + hi - lo + 1 for s, (lo, hi) in self.trade.items()}
        return _LoopShift(agg, trade, previous.time_us + self.t_max - self.t_min + 1_000_000)


def wall_clock_us(offset_ms: int) -> Callable[[], int]:
    """The server's clock in µs, ``offset_ms`` ahead of this machine's."""
    offset_us = offset_ms * 1000

    def now_us() -> int:
        return time.time_ns() // 1000 + offset_us

    return now_us
