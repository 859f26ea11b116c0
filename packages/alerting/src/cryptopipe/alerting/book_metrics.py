"""Per-symbol order-book metrics, computed after each applied update, exactly, in Decimal.

- ``mid = (best_bid + best_ask) / 2``;
- ``spread`` in basis points of the mid: ``(best_ask - best_bid) / mid * 10000``;
- ``imbalance`` of the top of book: ``(bid_qty - ask_qty) / (bid_qty + ask_qty)``, from -1 (all
  asks) to 1 (all bids);
- ``depth`` within ``X`` bps: the *notional* (price x quantity, in the quote currency) of every level
  whose price is within ``X`` bps of the mid, bids and asks together (bounds included). Notional,
  not quantity, so one bound reads the same for every symbol (250,000 USDT means as much liquidity
  for BTCUSDT as for a coin priced in cents).

A book with an empty side has no mid and so no metrics. Decimal's default context (28 significant
digits) rounds the divisions; every path (the express lane, Spark, the reference) uses these
functions' formulas, so they agree digit for digit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from cryptopipe.schemas import Level, OrderBook

BPS = Decimal(10_000)


@dataclass(frozen=True, slots=True)
class BookMetrics:
    """One book's metrics; ``depth`` maps a band (bps) to the notional within it."""

    mid: Decimal
    spread_bps: Decimal
    imbalance: Decimal
    depth: dict[int, Decimal] = field(default_factory=dict)

    def value(self, metric: str, band_bps: int | None = None) -> Decimal:
        """The value a rule on ``metric`` (``mid``, ``spread``, ``imbalance``, ``depth``) reads."""
        if metric == "depth":
            assert band_bps is not None
            return self.depth[band_bps]
        if metric == "spread":
            return self.spread_bps
        return self.imbalance if metric == "imbalance" else self.mid


def touch_metrics(bid: Level, ask: Level) -> tuple[Decimal, Decimal, Decimal]:
    """``(mid, spread_bps, imbalance)`` of a best bid and a best ask."""
    (bid_price, bid_qty), (ask_price, ask_qty) = bid, ask
    mid = (bid_price + ask_price) / 2
    spread_bps = (ask_price - bid_price) / mid * BPS
    imbalance = (bid_qty - ask_qty) / (bid_qty + ask_qty)
    return mid, spread_bps, imbalance


def band_notional(levels: Iterable[Level], mid: Decimal, band_bps: int) -> tuple[Decimal, bool]:
    """Notional of the levels (best first) within ``band_bps`` of ``mid``; and whether the band
    ended inside them (False: every level given was inside, there may be more)."""
    total = Decimal(0)
    limit = band_bps * mid
    for price, quantity in levels:
        if abs(price - mid) * BPS > limit:
            return total, True
        total += price * quantity
    return total, False


def _side_depth(book: OrderBook, side: str, mid: Decimal, band_bps: int) -> Decimal:
    """Depth of one side, reading the book's top in growing chunks (most bands hold few levels)."""
    size = 64
    while True:
        top = book.top(size)
        levels = top.bids if side == "bids" else top.asks
        total, ended = band_notional(levels, mid, band_bps)
        if ended or len(levels) < size:
            return total
        size *= 4


def book_metrics(book: OrderBook, bands_bps: Iterable[int] = ()) -> BookMetrics | None:
    """The metrics of ``book`` with depth for each band, or None when a side is empty."""
    bid, ask = book.best_bid(), book.best_ask()
    if bid is None or ask is None:
        return None
    mid, spread_bps, imbalance = touch_metrics(bid, ask)
    depth = {
        band: _side_depth(book, "bids", mid, band) + _side_depth(book, "asks", mid, band)
        for band in sorted(set(bands_bps))
    }
    return BookMetrics(mid, spread_bps, imbalance, depth)
