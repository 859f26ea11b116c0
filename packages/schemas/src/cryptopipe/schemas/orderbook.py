"""One symbol's local order book: price → quantity per side, kept sorted so the touch is O(1).

Shared by everything that holds a book: ingest (kept in sync with the exchange), the consumers
that rebuild books from Kafka, and the replay exchange. It knows nothing of update ids'
continuity; :class:`~cryptopipe.ingest.book.sync.BookSync` decides which diffs may be applied.
Levels outside the snapshot's depth that never change stay unknown, as Binance's documentation
warns, so only the top of a book is comparable with the exchange's.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Protocol

from cryptopipe.schemas.book import DepthSnapshot, Level


class Diff(Protocol):
    """What a book can be moved by: Binance's :class:`DepthDiff`, or the contract's update record."""

    @property
    def final_update_id(self) -> int: ...
    @property
    def event_time_us(self) -> int | None: ...
    @property
    def bids(self) -> Sequence[Level]: ...
    @property
    def asks(self) -> Sequence[Level]: ...


class _Side:
    """One side: a dict for lookups and an ascending list of its prices for the touch and the top N."""

    __slots__ = ("levels", "prices")

    def __init__(self, levels: Iterable[Level]) -> None:
        self.levels: dict[Decimal, Decimal] = {price: qty for price, qty in levels if qty}
        self.prices: list[Decimal] = sorted(self.levels)

    def set(self, levels: Iterable[Level]) -> None:
        """Set absolute quantities; 0 removes a level (one the book does not hold is fine)."""
        book, prices = self.levels, self.prices
        for price, qty in levels:
            if not qty:
                if book.pop(price, None) is not None:
                    del prices[bisect_left(prices, price)]
            else:
                if price not in book:
                    insort(prices, price)
                book[price] = qty


class OrderBook:
    """A symbol's bids and asks as of update ``update_id``.

    Built from a REST snapshot, then moved forward by diffs that the caller has checked to be
    contiguous. ``event_time_us`` is the exchange time of the last diff applied (None right after
    a snapshot, which carries no time).
    """

    __slots__ = ("_asks", "_bids", "event_time_us", "symbol", "update_id")

    def __init__(
        self,
        symbol: str,
        update_id: int,
        bids: Iterable[Level] = (),
        asks: Iterable[Level] = (),
        event_time_us: int | None = None,
    ) -> None:
        self.symbol = symbol
        self.update_id = update_id
        self.event_time_us = event_time_us
        self._bids = _Side(bids)
        self._asks = _Side(asks)

    @classmethod
    def from_snapshot(cls, snapshot: DepthSnapshot) -> OrderBook:
        """The book a REST depth snapshot describes, at its ``lastUpdateId``."""
        return cls(snapshot.symbol, snapshot.last_update_id, snapshot.bids, snapshot.asks)

    def apply(self, diff: Diff) -> None:
        """Set the diff's levels and move the book to its final update id."""
        self._bids.set(diff.bids)
        self._asks.set(diff.asks)
        self.update_id = diff.final_update_id
        self.event_time_us = diff.event_time_us

    @property
    def bids(self) -> Mapping[Decimal, Decimal]:
        """Every bid level, price → quantity (read-only by contract; no copy is made)."""
        return self._bids.levels

    @property
    def asks(self) -> Mapping[Decimal, Decimal]:
        """Every ask level, price → quantity (read-only by contract; no copy is made)."""
        return self._asks.levels

    def best_bid(self) -> Level | None:
        """The highest bid (price, quantity), or None when there are no bids."""
        prices = self._bids.prices
        return (prices[-1], self._bids.levels[prices[-1]]) if prices else None

    def best_ask(self) -> Level | None:
        """The lowest ask (price, quantity), or None when there are no asks."""
        prices = self._asks.prices
        return (prices[0], self._asks.levels[prices[0]]) if prices else None

    def is_crossed(self) -> bool:
        """True when the best bid is at or above the best ask: no real book looks like that."""
        bids, asks = self._bids.prices, self._asks.prices
        return bool(bids and asks and bids[-1] >= asks[0])

    def top(self, depth: int) -> DepthSnapshot:
        """The best ``depth`` levels per side, as ``GET /api/v3/depth?limit=depth`` would answer."""
        bid_prices = self._bids.prices[: -depth - 1 : -1] if depth > 0 else []
        ask_prices = self._asks.prices[:depth]
        return DepthSnapshot(
            symbol=self.symbol,
            last_update_id=self.update_id,
            bids=tuple((price, self._bids.levels[price]) for price in bid_prices),
            asks=tuple((price, self._asks.levels[price]) for price in ask_prices),
        )

    def __len__(self) -> int:
        """The number of levels held, both sides."""
        return len(self._bids.prices) + len(self._asks.prices)

    def __repr__(self) -> str:
        return (
            f"OrderBook({self.symbol!r}, update_id={self.update_id}, best_bid={self.best_bid()}, "
            f"best_ask={self.best_ask()}, levels={len(self)})"
        )
