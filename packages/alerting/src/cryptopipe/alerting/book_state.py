"""One symbol's book and its book rules, fed ``book-updates`` records in offset order.

The rule of both paths, as :class:`~cryptopipe.alerting.plan.SymbolState` is for trades: the
express lane keeps a :class:`BookState` per symbol in memory, the Spark operator
(:class:`~cryptopipe.alerting.book_plan.BookWindows`) rebuilds it from its checkpointed state
(:meth:`BookState.dump` / :meth:`BookState.load`). Per record:

- a ``reset`` of a newer (epoch, update id) replaces the book. It is a discontinuity: level
  episodes end, and mid windows that have not alerted start again from the first update after it
  (a window never compares mids across a reset); one that alerted early stays quiet. A reset is
  not a metric point itself (its time may be unknown).
- an ``update`` is taken by the contract's one rule
  (:class:`~cryptopipe.schemas.book_follow.BookFollower`): applied and gives one metric point at
  its ``event_time_us`` (:mod:`cryptopipe.alerting.book_metrics`); a stale one is skipped; a gap,
  an update of a newer epoch, or a book crossed after it gives the book up until the next reset
  (also a discontinuity).
- a point more than the delay behind the symbol's newest point is late: the book still moves, the
  point counts for no rule (as a late trade).
- mid rules: :class:`SymbolState`'s windows over the mid (update id breaks equal times).
- level rules: an episode starts at the first point beyond the bound; the point at or after
  ``start + hold`` that is still beyond it fires one ``final`` row (open = the value at the start,
  close = the value then); a point back within the bound, or a discontinuity, ends the episode.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from cryptopipe.alerting.book_metrics import book_metrics
from cryptopipe.alerting.plan import SymbolState
from cryptopipe.alerting.rules import Rule
from cryptopipe.schemas import BookRecord, BookResetRecord, OrderBook
from cryptopipe.schemas.book_follow import BookFollower

Row = tuple[Any, ...]


class BookState:
    """A symbol's book (None until a reset, and from a break to the next reset) and rule state."""

    def __init__(self, symbol: str, rules: Sequence[Rule], delay_us: int) -> None:
        self.symbol = symbol
        mine = [rule for rule in rules if rule.is_book and rule.applies_to(symbol)]
        self.levels = [rule for rule in mine if rule.is_level]
        self.bands = sorted({rule.band_bps for rule in self.levels if rule.band_bps is not None})
        self.moves = SymbolState(symbol, [rule for rule in mine if rule.metric == "mid"], delay_us)
        #: The book as book-updates describes it, followed by the contract's one rule.
        self.follower = BookFollower(symbol)
        #: rule name -> [start_us, value at start, fired]
        self.episodes: dict[str, list[Any]] = {}

    @property
    def book(self) -> OrderBook | None:
        return self.follower.book

    @property
    def epoch(self) -> int | None:
        return self.follower.epoch

    def take(self, record: BookRecord) -> list[Row] | None:
        """The rows this record emits (WINDOW_COLUMNS), or None when its point is late."""
        was_live = self.follower.book is not None
        outcome = self.follower.take(record)
        book = self.follower.book
        if isinstance(record, BookResetRecord) or book is None:
            if outcome == "applied" or (was_live and book is None):
                self._discontinuity()  # a new book, or the live one given up (a gap, crossed)
            return []
        if outcome != "applied":
            return []
        metrics = book_metrics(book, self.bands)
        if metrics is None:  # a side is empty: no mid, no metrics
            self.episodes.clear()
            return []
        t, r = record.event_time_us, record.receive_time_us
        rows = self.moves.feed(t, record.final_update_id, format(metrics.mid, "f"), r)
        if rows is None:
            return None
        for rule in self.levels:
            value = metrics.value(rule.metric, rule.band_bps)
            rows.extend(self._level(rule, value, t, r))
        return rows

    def _level(self, rule: Rule, value: Any, t: int, r: int) -> list[Row]:
        if not rule.beyond(self.symbol, value):
            self.episodes.pop(rule.name, None)
            return []
        episode = self.episodes.setdefault(rule.name, [t, format(value, "f"), False])
        if episode[2] or t - episode[0] < rule.hold_us:
            return []
        episode[2] = True
        return [(rule.name, self.symbol, "final", episode[0], episode[1], format(value, "f"), r, 0)]

    def _discontinuity(self) -> None:
        self.episodes.clear()
        windows = self.moves.windows
        for name in [name for name, window in windows.items() if not window[6]]:
            del windows[name]

    def dump(self) -> str:
        """The whole state as JSON (the Spark operator's checkpointed state)."""
        book = self.book
        return json.dumps(
            {
                "epoch": self.epoch,
                "book": None
                if book is None
                else [book.update_id, book.event_time_us, _levels(book, "bids"), _levels(book, "asks")],
                "newest": self.moves.newest,
                "windows": self.moves.windows,
                "episodes": self.episodes,
            },
            separators=(",", ":"),
        )

    def load(self, text: str) -> None:
        """Take back a state :meth:`dump` wrote."""
        saved = json.loads(text)
        self.follower.epoch = saved["epoch"]
        if saved["book"] is not None:
            update_id, event_us, bids, asks = saved["book"]
            book = OrderBook(
                self.symbol,
                update_id,
                [(Decimal(p), Decimal(q)) for p, q in bids],
                [(Decimal(p), Decimal(q)) for p, q in asks],
                event_us,
            )
            self.follower.adopt(book, saved["epoch"])
        self.moves.newest = saved["newest"]
        self.moves.windows = saved["windows"]
        self.episodes = saved["episodes"]


def _levels(book: OrderBook, side: str) -> list[list[str]]:
    levels = book.bids if side == "bids" else book.asks
    return [[format(price, "f"), format(quantity, "f")] for price, quantity in levels.items()]
