"""The REST trade history the tape keeps per symbol, bounded in count and in time.

Binance keeps every aggTrade forever; a replay exchange that ran for days could not. What a client
needs from it is a backfill after a reconnect (seconds, rarely minutes) and, in tests, the whole of
a short tape. So each symbol keeps what was played in the last ``seconds`` of wall time, at most
``limit`` entries, and a run at a steady rate reaches a flat memory once ``seconds`` have passed.

Trimming is by chunk: every ``chunk`` entries the history notes the wall time, and whole chunks
go once they are older than ``seconds`` (or beyond ``limit``). So the hot path pays one comparison
per trade, and a bound is exceeded by at most one chunk.
"""

from __future__ import annotations

import bisect
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from cryptopipe.schemas.binance import AggTradeEvent, TradeEvent

#: Resident bytes per kept entry, measured with tracemalloc (the event struct, its two Decimals and
#: the ints and list slots that index it): 448 for an aggTrade, about the same for a trade.
BYTES_PER_ENTRY = 450


@dataclass(frozen=True, slots=True)
class HistoryBounds:
    """How much history a symbol keeps: the last ``seconds`` of wall time, at most ``limit`` entries."""

    limit: int = 1_000_000
    seconds: float = 300.0
    #: Entries per retention mark: the granularity of trimming.
    chunk: int = 4096


class _Retention:
    """Where to cut the front of a growing list so that it keeps to ``bounds``."""

    def __init__(self, bounds: HistoryBounds, clock: Callable[[], float]) -> None:
        self.bounds = bounds
        self.clock = clock
        self.dropped = 0  # entries cut from the front so far (absolute index of the list's head)
        self.marks: deque[tuple[int, float]] = deque()  # (absolute index, wall time) per chunk
        self.trimmed = {"age": 0, "count": 0}

    def cut(self, length: int) -> int:
        """Called after an append: how many entries to delete from the front (usually 0)."""
        total = self.dropped + length
        if total % self.bounds.chunk:
            return 0
        now = self.clock()
        self.marks.append((total, now))
        head = self.dropped
        while self.marks and now - self.marks[0][1] > self.bounds.seconds:
            head = self.marks.popleft()[0]
        reason = "age"
        if total - head > self.bounds.limit:
            head, reason = total - self.bounds.limit, "count"
            while self.marks and self.marks[0][0] <= head:  # marks of what goes: no longer needed
                self.marks.popleft()
        if head <= self.dropped:
            return 0
        n = head - self.dropped
        self.dropped = head
        self.trimmed[reason] += n
        return n


class SymbolHistory:
    """The aggTrades (and trades) one symbol has played, times in µs, kept to ``bounds``.

    ``tmax`` is the running maximum of ``T``: monotone even when late trades make ``T`` go back,
    so a time query can bisect it and stop once past ``end + max_lateness``.
    """

    def __init__(self, bounds: HistoryBounds, clock: Callable[[], float] = time.monotonic) -> None:
        self.aggs: list[AggTradeEvent] = []
        self.ids: list[int] = []
        self.tmax: list[int] = []
        self.trades: list[TradeEvent] = []
        self.max_lateness_us = 0
        self.ids_monotone = True
        self._agg_retention = _Retention(bounds, clock)
        self._trade_retention = _Retention(bounds, clock)

    def add_agg(self, agg: AggTradeEvent) -> None:
        if self.ids and agg.a <= self.ids[-1]:
            self.ids_monotone = False
        top = max(self.tmax[-1], agg.T) if self.tmax else agg.T
        self.max_lateness_us = max(self.max_lateness_us, top - agg.T)
        self.aggs.append(agg)
        self.ids.append(agg.a)
        self.tmax.append(top)
        cut = self._agg_retention.cut(len(self.aggs))
        if cut:
            del self.aggs[:cut], self.ids[:cut], self.tmax[:cut]

    def add_trade(self, trade: TradeEvent) -> None:
        self.trades.append(trade)
        cut = self._trade_retention.cut(len(self.trades))
        if cut:
            del self.trades[:cut]

    def entries(self) -> int:
        """Entries kept now, both kinds."""
        return len(self.aggs) + len(self.trades)

    def trimmed(self) -> dict[str, int]:
        """Entries cut so far, by reason (``age``: older than the bound; ``count``: beyond the limit)."""
        a, t = self._agg_retention.trimmed, self._trade_retention.trimmed
        return {reason: a[reason] + t[reason] for reason in a}

    def query(
        self, *, from_id: int | None, start_us: int | None, end_us: int | None, limit: int
    ) -> list[AggTradeEvent]:
        """Binance's selection: by ``fromId``, by ``[start, end]`` (inclusive), else the most recent."""
        if from_id is not None:
            if self.ids_monotone:
                i = bisect.bisect_left(self.ids, from_id)
                return self.aggs[i : i + limit]
            return sorted((a for a in self.aggs if a.a >= from_id), key=lambda a: a.a)[:limit]
        if start_us is None and end_us is None:
            return self.aggs[-limit:]
        lo = start_us if start_us is not None else -1
        hi = end_us if end_us is not None else 2**63
        out: list[AggTradeEvent] = []
        stop_after = hi + self.max_lateness_us
        for j in range(bisect.bisect_left(self.tmax, lo), len(self.aggs)):
            if self.tmax[j] > stop_after:
                break
            agg = self.aggs[j]
            if lo <= agg.T <= hi:
                out.append(agg)
                if len(out) >= limit:
                    break
        return out


@dataclass(frozen=True, slots=True)
class HistoryUsage:
    """What every symbol's history holds now, and what was cut."""

    entries: int
    bytes_estimate: int
    trimmed: dict[str, int]


def usage(histories: dict[str, SymbolHistory]) -> HistoryUsage:
    entries = 0
    trimmed = {"age": 0, "count": 0}
    for history in list(histories.values()):
        entries += history.entries()
        for reason, n in history.trimmed().items():
            trimmed[reason] += n
    return HistoryUsage(entries, entries * BYTES_PER_ENTRY, trimmed)
