"""The tape's order-book side: it keeps one :class:`SymbolBook` per symbol and sends depth events.

Recorded ``@depth`` frames move the book and go out as recorded but for ``E``, which follows the
clock mode and the client's time unit as a trade's does; a recording's REST snapshot seeds the book.
Synthetic :class:`DepthRecord` diffs are rendered here (``E`` by the tape's clock, in each client's
time unit): the 100 ms ones move the book and go to ``<s>@depth@100ms``, the 1 s ones go to
``<s>@depth`` and its alias ``<s>@depth@1000ms`` (the name Binance's Python connector subscribes).
The depth fault knobs play here: a dropped event is not sent, but the book still moves, so the
client sees a gap. For ``depth_snapshot_stale``, the first subscription to a symbol's depth keeps a
copy of its book as it is then (or, with no book yet, the empty book before update 1): older than
any diff a subscriber can have buffered.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import msgspec

from cryptopipe.replay.book import LevelBook, SymbolBook
from cryptopipe.replay.config import ReplayConfig
from cryptopipe.replay.sources.base import DepthRecord, DepthSnapshotRecord, RawFrame, TextLevel, to_us

#: The stream suffixes of Binance's diff-depth streams, by their batching interval in ms.
DEPTH_KINDS = {"depth@100ms": 100, "depth": 1000, "depth@1000ms": 1000}


class _DiffWire(msgspec.Struct, frozen=True):
    E: int
    U: int
    u: int
    b: list[TextLevel]
    a: list[TextLevel]


_DIFF = msgspec.json.Decoder(_DiffWire)
_ENCODE = msgspec.json.Encoder().encode


class Fanout(Protocol):
    def __call__(
        self, stream: str, *, raw: bytes | None = None, render: Callable[[bool], bytes] | None = None
    ) -> None: ...


class DepthStats(Protocol):
    depth_events_dropped: int
    book_gaps: int


class DepthFeed:
    """Every symbol's book as the tape has played it, and the depth events sent from it."""

    def __init__(
        self, config: ReplayConfig, stats: DepthStats, fanout: Fanout, now_us: Callable[[], int]
    ) -> None:
        self.config = config
        self.stats = stats
        self.fanout = fanout
        self.now_us = now_us
        self.books: dict[str, SymbolBook] = {}
        #: Per symbol, the one recorded depth stream that moves its book (a recording may hold two).
        self._book_stream: dict[str, str] = {}
        self._sent: dict[str, int] = {}

    def state(self, symbol: str) -> SymbolBook:
        book = self.books.get(symbol)
        if book is None:
            book = self.books[symbol] = SymbolBook(symbol)
        return book

    def on_subscribe(self, stream: str) -> None:
        """Keep a stale copy of the book for ``depth_snapshot_stale`` before a client's first diff."""
        symbol, _, kind = stream.partition("@")
        if kind not in DEPTH_KINDS or not self.config.depth_snapshot_stale:
            return
        state = self.state(symbol.upper())
        if state.stale is None and state.requests < self._stale_until():
            # with no book yet, the book before any update (empty, id 0) is older than any diff
            state.stale = state.book.copy() if state.book is not None else LevelBook(0)

    def _stale_until(self) -> int:
        return self.config.depth_snapshot_fail + self.config.depth_snapshot_stale

    def play_raw(self, frame: RawFrame) -> bool:
        """Play a recorded frame if it is a diff-depth one (True), else leave it to the tape."""
        symbol, _, kind = frame.stream.partition("@")
        if kind not in DEPTH_KINDS:
            return False
        wire = _DIFF.decode(frame.data)
        symbol = symbol.upper()
        if self._book_stream.setdefault(symbol, frame.stream) == frame.stream:
            self._move(symbol, wire.U, wire.u, wire.b, wire.a)
        if not self._dropped(frame.stream, wire.U, wire.u):
            self.fanout(frame.stream, render=self._restamped(frame.data, wire.E))
        return True

    def _restamped(self, data: bytes, recorded_e: int) -> Callable[[bool], bytes]:
        """A recorded diff with ``E`` in each client's time unit, and now under the live clock."""
        event_us = self.now_us() if self.config.clock == "live" else to_us(recorded_e)
        recorded = b'"E":%d' % recorded_e

        def render(micros: bool) -> bytes:
            return data.replace(recorded, b'"E":%d' % (event_us if micros else event_us // 1000), 1)

        return render

    def play_snapshot(self, record: DepthSnapshotRecord) -> None:
        state = self.state(record.symbol)
        gaps = state.gaps
        state.on_snapshot(record.last_update_id, record.bids, record.asks)
        self.stats.book_gaps += state.gaps - gaps

    def play_record(self, record: DepthRecord) -> None:
        symbol = record.symbol
        if record.interval_ms == 100:
            self._move(symbol, record.first_id, record.final_id, record.bids, record.asks)
            streams: tuple[str, ...] = (symbol.lower() + "@depth@100ms",)
        else:
            lower = symbol.lower()
            streams = (lower + "@depth", lower + "@depth@1000ms")
        event_us = self.now_us() if self.config.clock == "live" else record.event_time_us

        def render(micros: bool) -> bytes:  # called only when the stream has subscribers
            return b'{"e":"depthUpdate","E":%d,"s":"%s","U":%d,"u":%d,"b":%s,"a":%s}' % (
                event_us if micros else event_us // 1000,
                symbol.encode(),
                record.first_id,
                record.final_id,
                _ENCODE(record.bids),
                _ENCODE(record.asks),
            )

        if not self._dropped(streams[0], record.first_id, record.final_id):
            for stream in streams:  # one event under its two names
                self.fanout(stream, render=render)

    def _move(
        self,
        symbol: str,
        first_id: int,
        final_id: int,
        bids: list[TextLevel] | tuple[TextLevel, ...],
        asks: list[TextLevel] | tuple[TextLevel, ...],
    ) -> None:
        state = self.state(symbol)
        gaps = state.gaps
        state.on_diff(first_id, final_id, bids, asks)
        self.stats.book_gaps += state.gaps - gaps

    def _dropped(self, stream: str, first_id: int, final_id: int) -> bool:
        """Whether the fault knobs drop this depth event on ``stream`` (counted once per event)."""
        config = self.config
        drop = config.depth_drop_update_id is not None and first_id <= config.depth_drop_update_id <= final_id
        if config.depth_drop_every is not None:
            n = self._sent[stream] = self._sent.get(stream, 0) + 1
            drop = drop or n % config.depth_drop_every == 0
        if drop:
            self.stats.depth_events_dropped += 1
        return drop
