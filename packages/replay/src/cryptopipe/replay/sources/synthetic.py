"""A seeded synthetic market: Poisson arrivals with occasional bursts, over one order book per symbol.

Each arrival is a trade or (``changes_per_trade`` times as often) an order added or cancelled in one
symbol's :class:`~.synthetic_book.SyntheticBook`, the symbol drawn by a Zipf skew of activity. A
trade happens at the touch and consumes what it fills, so prices walk in ticks and sizes in lots.
Without ``book`` the trades are priced by a random walk instead (cheaper: for trade benchmarks).
With ``book`` on, the source also yields each symbol's depth diffs (batched on 100 ms and 1 s
boundaries of its timeline, as ``@depth@100ms`` and ``@depth`` are) and a ``bookTicker`` frame at
each change of the touch; update ids are one counter per symbol, shared by all three.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections.abc import Iterable, Iterator
from decimal import Decimal

from cryptopipe.replay.errors import ReplayConfigError
from cryptopipe.replay.sources.base import RawFrame, Source, SourceEvent, TradeRecord
from cryptopipe.replay.sources.market import market_symbols, zipf_cumulative
from cryptopipe.replay.sources.synthetic_book import SyntheticBook, e8_text
from cryptopipe.replay.symbols import symbol_spec

#: 2024-01-01T00:00:00Z: the synthetic tape's original clock, so ``--clock original`` is deterministic.
SYNTHETIC_EPOCH_US = 1_704_067_200_000_000
_INTERVALS_MS = (100, 1000)
_EIGHT_PLACES = Decimal("0.00000001")


class SyntheticSource(Source):
    """Seeded trades (and, with ``book``, depth and bookTicker) for a market of symbols.

    ``rate`` is the long-run mean of trades per second over all symbols; ``burst=False`` gives a
    steady Poisson stream (benchmarks); ``count`` stops after that many trades. ``market_size`` > 0
    makes a whole market of that many TRADING symbols (``symbols`` first) plus a few that are not
    TRADING; ``skew`` is the Zipf exponent of activity by rank. The same seed yields the same events.
    """

    BURST_START_P = 0.01
    BURST_MEAN_LEN = 30
    BURST_FACTOR = 10.0

    def __init__(
        self,
        symbols: Iterable[str],
        *,
        rate: float,
        seed: int,
        burst: bool = True,
        count: int | None = None,
        book: bool = False,
        changes_per_trade: float = 3.0,
        market_size: int = 0,
        skew: float = 1.0,
    ) -> None:
        super().__init__()
        trading, inactive = market_symbols(tuple(s.upper() for s in symbols), market_size)
        if not trading:
            raise ReplayConfigError("symbols", "the synthetic source needs at least one symbol")
        self._symbols = trading
        self._inactive = frozenset(inactive)
        self.rate = rate
        self.seed = seed
        self.burst = burst
        self.count = count
        self.book = book
        self.changes_per_trade = changes_per_trade
        self.skew = skew
        self.name = f"synthetic(seed={seed})"

    @property
    def symbols(self) -> frozenset[str]:
        return frozenset(self._symbols)

    @property
    def inactive_symbols(self) -> frozenset[str]:
        return self._inactive

    def _base_rate(self) -> float:
        if not self.burst:
            return self.rate
        share = self.BURST_START_P * self.BURST_MEAN_LEN / (1 + self.BURST_START_P * self.BURST_MEAN_LEN)
        return self.rate * ((1 - share) + share / self.BURST_FACTOR)

    def _arrivals(self, rng: random.Random, rate: float) -> Iterator[float]:
        """Arrival times (µs): Poisson at ``rate`` per second, with occasional 10x bursts."""
        now_us = float(SYNTHETIC_EPOCH_US)
        burst_left = 0
        while True:
            if self.burst and burst_left == 0 and rng.random() < self.BURST_START_P:
                burst_left = 1 + int(rng.expovariate(1.0 / self.BURST_MEAN_LEN))
            factor = self.BURST_FACTOR if burst_left > 0 else 1.0
            burst_left = max(0, burst_left - 1)
            now_us += rng.expovariate(rate * factor) * 1e6
            yield now_us

    def events(self) -> Iterator[SourceEvent]:
        rng = random.Random(self.seed)
        return self._book_events(rng) if self.book else self._walk_events(rng)

    def _walk_events(self, rng: random.Random) -> Iterator[SourceEvent]:
        """Trades only, prices on a random walk: the cheap market for trade benchmarks."""
        specs = [symbol_spec(s) for s in self._symbols]
        ticks = [Decimal(s.tick) for s in specs]
        lots = [Decimal(s.lot) for s in specs]
        price_ticks = [int(Decimal(s.start_price) / Decimal(s.tick)) for s in specs]
        log_typical = [math.log(float(Decimal(s.typical_qty) / Decimal(s.lot))) for s in specs]
        next_id = [100_000_000 * (i + 1) for i in range(len(specs))]
        cumulative = zipf_cumulative(len(specs), self.skew)
        arrivals = self._arrivals(rng, self._base_rate())
        for _ in itertools.repeat(None) if self.count is None else range(self.count):
            trade_time = int(next(arrivals))
            i = min(bisect.bisect_right(cumulative, rng.random()), len(specs) - 1)
            sigma = max(1.0, price_ticks[i] * 0.0001)
            price_ticks[i] = max(1, price_ticks[i] + round(rng.gauss(0.0, sigma)))
            lots_n = max(1, round(math.exp(rng.gauss(log_typical[i], 1.2))))
            trade_id = next_id[i]
            next_id[i] += 1
            yield TradeRecord(
                symbol=self._symbols[i],
                kind="trade",
                id=trade_id,
                price=(price_ticks[i] * ticks[i]).quantize(_EIGHT_PLACES),
                qty=(lots_n * lots[i]).quantize(_EIGHT_PLACES),
                first_id=trade_id,
                last_id=trade_id,
                trade_time_us=trade_time,
                event_time_us=trade_time + rng.randrange(0, 1500),
                buyer_is_maker=rng.random() < 0.5,
                best_match=True,
                pace_ns=trade_time * 1000,
            )

    def _book_events(self, rng: random.Random) -> Iterator[SourceEvent]:
        """Trades at the touch of each symbol's book, with its depth diffs and bookTicker frames."""
        books = [SyntheticBook(s, symbol_spec(s), rng) for s in self._symbols]
        flusher = _DepthFlusher(books, SYNTHETIC_EPOCH_US)
        next_id = [100_000_000 * (i + 1) for i in range(len(books))]
        cumulative = zipf_cumulative(len(books), self.skew)
        trade_share = 1.0 / (1.0 + self.changes_per_trade)
        produced = 0
        for arrival in self._arrivals(rng, self._base_rate() / trade_share):
            if self.count is not None and produced >= self.count:
                break
            now_us = int(arrival)
            if now_us >= flusher.soonest:
                yield from flusher.due(now_us)
            i = min(bisect.bisect_right(cumulative, rng.random()), len(books) - 1)
            book = books[i]
            touch = book.touch()
            if rng.random() < trade_share:
                yield self._trade(book, rng, next_id[i], now_us)
                next_id[i] += 1
                produced += 1
            else:
                book.change(rng)
            flusher.dirty(i)
            if book.touch() != touch:
                yield RawFrame(book.symbol.lower() + "@bookTicker", book.ticker_payload(), now_us * 1000)
        yield from flusher.rest()

    def _trade(self, book: SyntheticBook, rng: random.Random, trade_id: int, trade_us: int) -> TradeRecord:
        buyer_is_maker = rng.random() < 0.5
        tick, lots = book.trade(buyer_is_maker, book.order_lots(rng))
        return TradeRecord(
            symbol=book.symbol,
            kind="trade",
            id=trade_id,
            price=Decimal(e8_text(tick * book.tick_e8)),
            qty=Decimal(e8_text(lots * book.lot_e8)),
            first_id=trade_id,
            last_id=trade_id,
            trade_time_us=trade_us,
            event_time_us=trade_us + rng.randrange(0, 1500),
            buyer_is_maker=buyer_is_maker,
            best_match=True,
            pace_ns=trade_us * 1000,
        )


class _DepthFlusher:
    """Sends each book's pending changes as a depth diff on every 100 ms and 1 s boundary."""

    def __init__(self, books: list[SyntheticBook], start_us: int) -> None:
        self.books = books
        self.pending: dict[int, dict[int, None]] = {
            ms: dict.fromkeys(range(len(books))) for ms in _INTERVALS_MS
        }
        # the first diffs, at the start, carry each book as built from nothing (update 1 onwards)
        self.next_at = dict.fromkeys(_INTERVALS_MS, start_us)
        #: The next boundary of either interval: nothing is due before it.
        self.soonest = min(self.next_at.values())

    def dirty(self, i: int) -> None:
        for pending in self.pending.values():
            pending[i] = None

    def due(self, now_us: int) -> Iterator[SourceEvent]:
        """The diffs of every boundary up to ``now_us``, in time order (100 ms first on a tie)."""
        while True:
            interval = 100 if self.next_at[100] <= self.next_at[1000] else 1000
            at = self.next_at[interval]
            if at > now_us:
                self.soonest = min(self.next_at.values())
                return
            step = interval * 1000
            pending = self.pending[interval]
            if pending:
                for i in pending:
                    record = self.books[i].diff(interval, at)
                    if record is not None:
                        yield record
                pending.clear()
                self.next_at[interval] = at + step
            else:
                self.next_at[interval] = (now_us // step + 1) * step

    def rest(self) -> Iterator[SourceEvent]:
        """At the end: what is still pending, at the next boundaries."""
        yield from self.due(max(self.next_at.values()))
