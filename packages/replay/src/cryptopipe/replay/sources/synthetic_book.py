"""One synthetic symbol's order book: levels in whole ticks and lots, moved by orders and trades.

Orders are added near the touch (sometimes inside the spread) and cancelled; a trade takes the
touch on one side and consumes the quantity it fills, so the book is never crossed and its price
walks by itself. Every level change is one update id. The changes since the last 100 ms and 1 s
boundaries are kept for the depth diffs; a change of the touch makes a ``bookTicker`` frame.
Each side keeps between :data:`MIN_LEVELS` and :data:`MAX_LEVELS` levels.
"""

from __future__ import annotations

import heapq
import math
import random
from decimal import Decimal

from cryptopipe.replay.sources.base import DepthRecord, TextLevel
from cryptopipe.replay.symbols import SymbolSpec

INITIAL_LEVELS = 50
MIN_LEVELS = 10
MAX_LEVELS = 200
#: Levels cancelled at once, farthest first, when a side grows past :data:`MAX_LEVELS`.
_TRIM = 20
_E8 = 100_000_000
#: Ticks from the touch of a new or cancelled order: exponential with this mean.
_MEAN_OFFSET_TICKS = 4.0
#: Share of added orders placed inside the spread (when it is wider than one tick).
_IMPROVE_P = 0.3
#: Order sizes relative to the typical one: log-normal (sigma 1.2), drawn once (cheaper than per order).
_SIZE_TABLE = 4096
_SIZE_RNG = random.Random(_SIZE_TABLE)
_SIZE_FACTORS = [math.exp(_SIZE_RNG.gauss(0.0, 1.2)) for _ in range(_SIZE_TABLE)]


def e8_text(value: int) -> str:
    """An amount in 1e-8 units as Binance writes it: ``6000000000000`` -> ``"60000.00000000"``."""
    units, fraction = divmod(value, _E8)
    return f"{units}.{fraction:08d}"


class SyntheticBook:
    """A symbol's bids and asks (tick -> lots), its update id, and the changes not yet sent."""

    __slots__ = (
        "asks",
        "best_ask",
        "best_bid",
        "bids",
        "changes",
        "first_ids",
        "lot_e8",
        "prices",
        "symbol",
        "tick_e8",
        "typical",
        "update_id",
    )

    def __init__(self, symbol: str, spec: SymbolSpec, rng: random.Random) -> None:
        self.symbol = symbol
        self.tick_e8 = int(Decimal(spec.tick) * _E8)
        self.lot_e8 = int(Decimal(spec.lot) * _E8)
        #: tick -> its price text (see :meth:`price_text`).
        self.prices: dict[int, str] = {}
        self.typical = float(Decimal(spec.typical_qty) / Decimal(spec.lot))
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self.update_id = 0
        #: Per interval (100, 1000 ms): (is_bid, tick) -> lots changed since the last diff.
        self.changes: dict[int, dict[tuple[bool, int], int]] = {100: {}, 1000: {}}
        self.first_ids: dict[int, int] = {}
        mid = int(Decimal(spec.start_price) / Decimal(spec.tick))
        self.best_bid, self.best_ask = mid, mid + 1
        for k in range(INITIAL_LEVELS):
            self._set(True, mid - k, self.order_lots(rng) * (1 + k % 3))
            self._set(False, mid + 1 + k, self.order_lots(rng) * (1 + k % 3))

    def order_lots(self, rng: random.Random) -> int:
        """One order's size in lots: log-normal around the symbol's typical quantity."""
        return max(1, round(self.typical * _SIZE_FACTORS[int(rng.random() * _SIZE_TABLE)]))

    def touch(self) -> tuple[int, int, int, int]:
        return self.best_bid, self.bids[self.best_bid], self.best_ask, self.asks[self.best_ask]

    def _set(self, is_bid: bool, tick: int, lots: int) -> None:
        """Set one level (0 removes it): one update id, remembered for both depth intervals."""
        side = self.bids if is_bid else self.asks
        if lots:
            side[tick] = lots
            if (tick > self.best_bid) if is_bid else (tick < self.best_ask):
                self._set_best(is_bid, tick)
        else:
            del side[tick]
            if side and tick == (self.best_bid if is_bid else self.best_ask):
                self._set_best(is_bid, max(side) if is_bid else min(side))
        self.update_id += 1
        for interval, changed in self.changes.items():
            if not changed:
                self.first_ids[interval] = self.update_id
            changed[(is_bid, tick)] = lots

    def _set_best(self, is_bid: bool, tick: int) -> None:
        if is_bid:
            self.best_bid = tick
        else:
            self.best_ask = tick

    def trade(self, buyer_is_maker: bool, lots: int) -> tuple[int, int]:
        """A taker hits the touch (the bid when the buyer is the maker): (price ticks, lots filled)."""
        is_bid = buyer_is_maker
        side = self.bids if is_bid else self.asks
        tick = self.best_bid if is_bid else self.best_ask
        filled = min(lots, side[tick])
        self._set(is_bid, tick, side[tick] - filled)
        self._refill(is_bid)
        return tick, filled

    def change(self, rng: random.Random) -> None:
        """An order added or cancelled near the touch (inside the spread now and then)."""
        is_bid = rng.random() < 0.5
        side = self.bids if is_bid else self.asks
        offset = int(rng.expovariate(1.0 / _MEAN_OFFSET_TICKS))
        touch = self.best_bid if is_bid else self.best_ask
        tick = touch - offset if is_bid else touch + offset
        if rng.random() < 0.5 and tick in side and len(side) > MIN_LEVELS:
            left = side[tick] - self.order_lots(rng)
            self._set(is_bid, tick, max(0, left))
            return
        spread = self.best_ask - self.best_bid
        if spread > 1 and rng.random() < _IMPROVE_P:
            tick = touch + 1 if is_bid else touch - 1
        self._set(is_bid, tick, side.get(tick, 0) + self.order_lots(rng))
        if len(side) > MAX_LEVELS:
            pick = heapq.nsmallest if is_bid else heapq.nlargest
            for far in pick(_TRIM, side):
                self._set(is_bid, far, 0)

    def _refill(self, is_bid: bool) -> None:
        """Keep at least :data:`MIN_LEVELS` a side: new orders beyond its far end."""
        side = self.bids if is_bid else self.asks
        while len(side) < MIN_LEVELS:
            if is_bid:
                far = min(side) - 1 if side else self.best_ask - 1
            else:
                far = max(side) + 1 if side else self.best_bid + 1
            side_was_empty = not side
            self._set(is_bid, far, self.order_lots_default())
            if side_was_empty:
                self._set_best(is_bid, far)

    def order_lots_default(self) -> int:
        return max(1, round(self.typical))

    def ticker_payload(self) -> bytes:
        """The ``bookTicker`` frame for the touch as of the current update id."""
        bid, bid_lots, ask, ask_lots = self.touch()
        return (
            f'{{"u":{self.update_id},"s":"{self.symbol}","b":"{self.price_text(bid)}",'
            f'"B":"{e8_text(bid_lots * self.lot_e8)}","a":"{self.price_text(ask)}",'
            f'"A":"{e8_text(ask_lots * self.lot_e8)}"}}'
        ).encode()

    def price_text(self, tick: int) -> str:
        """A tick's price as Binance writes it, cached (the cache is cleared when it outgrows the book)."""
        prices = self.prices
        text = prices.get(tick)
        if text is None:
            if len(prices) > 4 * MAX_LEVELS:
                prices.clear()
            text = prices[tick] = e8_text(tick * self.tick_e8)
        return text

    def diff(self, interval_ms: int, at_us: int) -> DepthRecord | None:
        """The depth diff of the changes since the last one on this interval, or None if none."""
        changed = self.changes[interval_ms]
        if not changed:
            return None
        bids: list[TextLevel] = []
        asks: list[TextLevel] = []
        lot_e8, price_text = self.lot_e8, self.price_text
        for (is_bid, tick), lots in changed.items():
            (bids if is_bid else asks).append((price_text(tick), e8_text(lots * lot_e8)))
        changed.clear()
        return DepthRecord(
            self.symbol,
            self.first_ids[interval_ms],
            self.update_id,
            tuple(bids),
            tuple(asks),
            interval_ms,
            at_us,
            at_us * 1000,
        )
