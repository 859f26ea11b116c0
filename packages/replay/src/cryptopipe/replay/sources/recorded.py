"""Recorded WebSocket frames: ``<receive time ns> <combined-stream JSON>`` per line, gzip or plain.

Trades and aggTrades are parsed; other recorded streams (``depth``, ``bookTicker``) are passed
through verbatim as :class:`RawFrame` to subscribers of exactly that stream name, and carry no
history. A line that is valid JSON but no stream frame is not sent and is counted in
``skipped_lines``; when it is the REST depth snapshot of a one-symbol recording (and passthrough is
on) it is also yielded as a :class:`DepthSnapshotRecord`, from which the exchange rebuilds the book.
A malformed line fails with ``path:line`` unless ``skip_bad_lines`` is set, then it is skipped and
counted in ``bad_lines``.
"""

from __future__ import annotations

import gzip
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import msgspec

from cryptopipe.replay.errors import SourceError
from cryptopipe.replay.sources.base import (
    DepthSnapshotRecord,
    RawFrame,
    Source,
    SourceEvent,
    TextLevel,
    TradeKind,
    TradeRecord,
    to_us,
)
from cryptopipe.schemas import DecodeError
from cryptopipe.schemas.binance import AggTradeEvent, StreamEvent, parse_event, split_frame

log = logging.getLogger(__name__)


class _SnapshotWire(msgspec.Struct, frozen=True):
    lastUpdateId: int
    bids: list[TextLevel]
    asks: list[TextLevel]


_SNAPSHOT = msgspec.json.Decoder(_SnapshotWire)
_STREAM_FIELD = re.compile(rb'"stream"\s*:\s*"([^"]+)"')


def _open_binary_lines(path: Path) -> IO[bytes]:
    with path.open("rb") as probe:
        magic = probe.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rb")  # type: ignore[return-value]  # GzipFile is a binary IO
    return path.open("rb")


class RecordedFramesSource(Source):
    """``<receive time ns> <combined-stream JSON>`` per line, gzip or plain, mixed streams.

    Sample line::

        1723161254087896568 {"stream":"btcusdt@trade","data":{"e":"trade","E":1723161255343,...}}
    """

    def __init__(self, path: Path, *, skip_bad_lines: bool = False, passthrough: bool = True) -> None:
        super().__init__()
        self.path = path
        self.skip_bad_lines = skip_bad_lines
        self.passthrough = passthrough
        self.name = path.name
        self._symbols: frozenset[str] | None = None
        self._agg_symbols: frozenset[str] = frozenset()

    def _scan(self) -> None:
        symbols: set[str] = set()
        agg: set[str] = set()
        with _open_binary_lines(self.path) as stream:
            for line in stream:
                match = _STREAM_FIELD.search(line, 0, 200)
                if match is None:
                    continue
                name = match.group(1).decode("ascii", "replace")
                symbol, _, kind = name.partition("@")
                symbols.add(symbol.upper())
                if kind == "aggTrade":
                    agg.add(symbol.upper())
        self._symbols = frozenset(symbols)
        self._agg_symbols = frozenset(agg)

    @property
    def symbols(self) -> frozenset[str]:
        if self._symbols is None:
            self._scan()
        assert self._symbols is not None
        return self._symbols

    @property
    def agg_symbols(self) -> frozenset[str]:
        if self._symbols is None:
            self._scan()
        return self._agg_symbols

    def _bad(self, lineno: int, message: str) -> None:
        if not self.skip_bad_lines:
            raise SourceError(self.path, message, lineno)
        self.bad_lines += 1
        log.warning("%s:%d: skipped bad line: %s", self.path, lineno, message)

    def events(self) -> Iterator[SourceEvent]:
        with _open_binary_lines(self.path) as stream:
            for lineno, raw in enumerate(stream, 1):
                line = raw.strip()
                if not line:
                    continue
                prefix, _, body = line.partition(b" ")
                if not prefix.isdigit() or not body:
                    self._bad(lineno, "expected '<receive time ns> <JSON>'")
                    continue
                pace_ns = int(prefix)
                try:
                    frame = split_frame(body)
                except DecodeError as exc:
                    if exc.reason == "not_a_stream_frame":
                        self.skipped_lines += 1  # e.g. the REST depth snapshot line
                        snapshot = self._snapshot(body, pace_ns)
                        if snapshot is not None:
                            yield snapshot
                    else:
                        self._bad(lineno, f"malformed JSON: {exc}")
                    continue
                kind = frame.stream.partition("@")[2]
                if kind not in ("trade", "aggTrade"):
                    if self.passthrough:
                        yield RawFrame(frame.stream, frame.data, pace_ns)
                    continue
                try:
                    event = parse_event(frame.data)
                except DecodeError as exc:
                    self._bad(lineno, f"invalid {kind} event: {exc}")
                    continue
                if event is None:
                    self._bad(lineno, f"stream {frame.stream!r} does not carry a {kind} event")
                    continue
                yield _event_record(event, pace_ns)

    def _snapshot(self, body: bytes, pace_ns: int) -> DepthSnapshotRecord | None:
        """The REST depth snapshot on this line, if it is one and the file has one symbol to own it."""
        if not self.passthrough or len(self.symbols) != 1:
            return None
        try:
            wire = _SNAPSHOT.decode(body)
        except msgspec.MsgspecError:
            return None
        (symbol,) = self.symbols
        return DepthSnapshotRecord(symbol, wire.lastUpdateId, tuple(wire.bids), tuple(wire.asks), pace_ns)


def _event_record(event: StreamEvent, pace_ns: int) -> TradeRecord:
    """A recorded stream event on the source timeline (a trade is its own first and last id)."""
    kind: TradeKind
    if isinstance(event, AggTradeEvent):
        kind, trade_id, first_id, last_id = "aggTrade", event.a, event.f, event.l
    else:
        kind, trade_id, first_id, last_id = "trade", event.t, event.t, event.t
    return TradeRecord(
        event.s.upper(),
        kind,
        trade_id,
        event.p,
        event.q,
        first_id,
        last_id,
        to_us(event.T),
        to_us(event.E),
        event.m,
        event.M,
        pace_ns,
    )
