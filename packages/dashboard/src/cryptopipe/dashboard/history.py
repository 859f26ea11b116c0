"""Each symbol's price history kept by market time, in memory and bounded: the last price in every
second of trade time over the last two hours, and the changes over fixed windows computed from it.

Redis keeps only the newest trades per symbol (``PRICES_CONSUMER_HISTORY_CAP``, 1,000 by default:
a few seconds of a busy market). The dashboard reads them on every refresh and folds them into
this history, so it covers the time since the dashboard started watching, up to :data:`KEEP_S`.
A read that shares no trade with what was kept while Redis returned a full list (more trades
arrived between two refreshes than Redis holds) may have missed some seconds: it counts as a gap.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

#: One point per second of market time: the last trade's price in that second.
BUCKET_US = 1_000_000
#: How much market time is kept (at most one point a second: 7,200 points per symbol).
KEEP_S = 2 * 3600
#: The fixed windows of the cards' changes: label, seconds.
WINDOWS: tuple[tuple[str, int], ...] = (("1m", 60), ("5m", 300), ("1h", 3600))
#: The chart covers the newest hour at most, drawn with at most this many points.
CHART_S = 3600
CHART_POINTS = 720

Point = tuple[int, float]


@dataclass(frozen=True, slots=True)
class Change:
    """The change over one fixed window: the last price against the price at the window's start
    (to the second). ``pct`` is None while the history is shorter than the window."""

    window: str
    pct: float | None


class SymbolHistory:
    """One symbol's points, ``{second: (trade_time_us, price)}``, oldest dropped beyond ``keep_s``."""

    def __init__(self, keep_s: int = KEEP_S) -> None:
        self.keep_s = keep_s
        self._points: dict[int, Point] = {}
        self.gaps = 0

    def add(self, trades: Sequence[Point], *, full: bool) -> None:
        """Fold in the newest trades, oldest first; ``full`` says Redis returned as many as asked."""
        if not trades:
            return
        newest = self.newest_us
        if full and newest is not None and trades[0][0] > newest:
            self.gaps += 1
        for time_us, price in trades:
            second = time_us // BUCKET_US
            held = self._points.get(second)
            if held is None or time_us >= held[0]:
                self._points[second] = (time_us, price)
        horizon = max(self._points) - self.keep_s
        for second in [s for s in self._points if s < horizon]:
            del self._points[second]

    def __len__(self) -> int:
        return len(self._points)

    @property
    def newest_us(self) -> int | None:
        return self._points[max(self._points)][0] if self._points else None

    def points(self) -> list[Point]:
        """Every kept point, oldest first."""
        return [self._points[s] for s in sorted(self._points)]

    def span_s(self) -> float:
        """Market time covered: newest minus oldest point, in seconds."""
        points = self.points()
        return (points[-1][0] - points[0][0]) / 1e6 if points else 0.0


def price_at(points: Sequence[Point], time_us: int) -> float | None:
    """The last price at or before ``time_us``; None when the points start after it."""
    found: float | None = None
    for point_time, price in points:
        if point_time > time_us:
            break
        found = price
    return found


def changes(points: Sequence[Point]) -> tuple[Change, ...]:
    """The change over each of :data:`WINDOWS`, ending at the newest point."""
    if not points:
        return tuple(Change(label, None) for label, _ in WINDOWS)
    last_time, last = points[-1]
    out = []
    for label, seconds in WINDOWS:
        start = price_at(points, last_time - seconds * 1_000_000)
        pct = None if start is None or start == 0 else (last - start) / start * 100
        out.append(Change(label, pct))
    return tuple(out)


def thin(points: Sequence[Point], *, span_s: int = CHART_S, most: int = CHART_POINTS) -> list[Point]:
    """The chart's points: the newest ``span_s`` of market time, at most ``most`` of them (the last
    price in each of equal steps; a step chart of them shows the same path, coarser)."""
    if not points:
        return []
    recent = [p for p in points if p[0] >= points[-1][0] - span_s * 1_000_000]
    step = -(-(recent[-1][0] - recent[0][0]) // max(1, most - 1))
    if step <= BUCKET_US:
        return recent
    last_of: dict[int, Point] = {}
    for point in recent:
        last_of[point[0] // step] = point
    return [last_of[k] for k in sorted(last_of)]


class MarketHistory:
    """Every symbol's :class:`SymbolHistory`, shared by the page's sessions (hence the lock)."""

    def __init__(self, keep_s: int = KEEP_S) -> None:
        self.keep_s = keep_s
        #: When this history began (wall clock): it holds nothing older than what Redis held then.
        self.started_us = time.time_ns() // 1000
        self._symbols: dict[str, SymbolHistory] = {}
        self._lock = threading.Lock()

    def add(self, symbol: str, trades: Sequence[Point], *, full: bool) -> tuple[list[Point], int]:
        """Fold in ``symbol``'s newest trades; its kept points (oldest first) and gaps so far."""
        with self._lock:
            history = self._symbols.setdefault(symbol, SymbolHistory(self.keep_s))
            history.add(trades, full=full)
            return history.points(), history.gaps
