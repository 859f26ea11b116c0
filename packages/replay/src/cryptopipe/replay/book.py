"""The exchange's order books, one per symbol, with levels kept as Binance writes them.

A :class:`LevelBook` maps price text to quantity text per side (``"61837.63000000"`` ->
``"3.78826000"``), so ``/api/v3/depth`` answers with the very strings the stream sent; it sorts
only when asked for its top levels. It holds at most :data:`MAX_LEVELS` per side (Binance's largest
REST depth): past that the farthest levels go, as they are unknown to any client anyway.

A :class:`SymbolBook` is a symbol's book as the tape has played it, moved by Binance's own rules:
until a snapshot the book is unknown and the latest diffs are buffered (a diff starting at update 1
is a book built from nothing: it starts one, even over an older book, as a looping tape does); then
diffs with ``u <= lastUpdateId`` are dropped, and a diff with ``U > lastUpdateId + 1`` is a gap,
after which the book is unknown again.
"""

from __future__ import annotations

import heapq
import logging
from collections import deque
from collections.abc import Iterable, Sequence
from decimal import Decimal

from cryptopipe.replay.sources.base import TextLevel
from cryptopipe.schemas import DepthSnapshot

log = logging.getLogger(__name__)

#: Levels kept per side: ``/api/v3/depth``'s largest ``limit``.
MAX_LEVELS = 5000
#: Diffs buffered per symbol while its book is unknown (the recordings need a handful).
PENDING_DIFFS = 256


def is_zero(quantity: str) -> bool:
    """True for ``"0"``, ``"0.00000000"``: a diff's "remove this level"."""
    return not quantity.strip("0.")


class LevelBook:
    """A book at ``update_id``: price text -> quantity text per side, at most ``max_levels`` a side."""

    __slots__ = ("asks", "bids", "max_levels", "update_id")

    def __init__(
        self,
        update_id: int,
        bids: Iterable[TextLevel] = (),
        asks: Iterable[TextLevel] = (),
        max_levels: int = MAX_LEVELS,
    ) -> None:
        self.update_id = update_id
        self.max_levels = max_levels
        self.bids: dict[str, str] = {p: q for p, q in bids if not is_zero(q)}
        self.asks: dict[str, str] = {p: q for p, q in asks if not is_zero(q)}

    def apply(self, bids: Iterable[TextLevel], asks: Iterable[TextLevel], final_id: int) -> None:
        """Set the levels' absolute quantities (zero removes) and move to ``final_id``."""
        for side, levels, best_is_high in ((self.bids, bids, True), (self.asks, asks, False)):
            for price, quantity in levels:
                if is_zero(quantity):
                    side.pop(price, None)
                else:
                    side[price] = quantity
            if len(side) > self.max_levels + self.max_levels // 4:
                self._trim(side, best_is_high)
        self.update_id = final_id

    def _trim(self, side: dict[str, str], best_is_high: bool) -> None:
        pick = heapq.nlargest if best_is_high else heapq.nsmallest
        keep = set(pick(self.max_levels, side, key=Decimal))
        for price in [p for p in side if p not in keep]:
            del side[price]

    def top(self, limit: int) -> tuple[list[TextLevel], list[TextLevel]]:
        """The best ``limit`` bids (highest first) and asks (lowest first)."""
        bids = heapq.nlargest(limit, self.bids, key=Decimal)
        asks = heapq.nsmallest(limit, self.asks, key=Decimal)
        return [(p, self.bids[p]) for p in bids], [(p, self.asks[p]) for p in asks]

    def snapshot(self, symbol: str, limit: int) -> DepthSnapshot:
        """The top ``limit`` levels a side as the typed REST answer (Decimal levels)."""
        bids, asks = self.top(limit)
        return DepthSnapshot(
            symbol=symbol,
            last_update_id=self.update_id,
            bids=tuple((Decimal(p), Decimal(q)) for p, q in bids),
            asks=tuple((Decimal(p), Decimal(q)) for p, q in asks),
        )

    def best(self) -> tuple[TextLevel | None, TextLevel | None]:
        """The best bid and the best ask, each None when that side is empty."""
        bids, asks = self.top(1)
        return (bids[0] if bids else None), (asks[0] if asks else None)

    def copy(self) -> LevelBook:
        book = LevelBook(self.update_id, max_levels=self.max_levels)
        book.bids, book.asks = dict(self.bids), dict(self.asks)
        return book

    def __len__(self) -> int:
        return len(self.bids) + len(self.asks)


class SymbolBook:
    """One symbol's book as played (None while unknown), and what the REST side keeps for it."""

    __slots__ = ("book", "gaps", "pending", "requests", "stale", "symbol")

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.book: LevelBook | None = None
        self.pending: deque[tuple[int, int, Sequence[TextLevel], Sequence[TextLevel]]] = deque(
            maxlen=PENDING_DIFFS
        )
        self.gaps = 0
        #: ``/api/v3/depth`` requests for this symbol so far (the snapshot faults count them).
        self.requests = 0
        #: A copy from before any client subscribed to this depth, for ``depth_snapshot_stale``.
        self.stale: LevelBook | None = None

    def on_snapshot(self, last_update_id: int, bids: Sequence[TextLevel], asks: Sequence[TextLevel]) -> None:
        """Seed the book from a REST snapshot, then apply the buffered diffs that follow it."""
        self.book = LevelBook(last_update_id, bids, asks)
        pending = list(self.pending)
        self.pending.clear()
        for diff in pending:
            self.on_diff(*diff)

    def on_diff(
        self, first_id: int, final_id: int, bids: Sequence[TextLevel], asks: Sequence[TextLevel]
    ) -> None:
        """Apply one diff by Binance's rules (drop old ones; a gap makes the book unknown)."""
        book = self.book
        if first_id == 1:  # a book built from nothing (a synthetic tape starting, or looping)
            book = self.book = LevelBook(0)
        elif book is None:
            self.pending.append((first_id, final_id, bids, asks))
            return
        if final_id <= book.update_id:
            return
        if first_id > book.update_id + 1:
            self.gaps += 1
            log.warning(
                "%s: depth gap after update %d (next diff starts at %d): book unknown until a snapshot",
                self.symbol,
                book.update_id,
                first_id,
            )
            self.book = None
            self.pending.append((first_id, final_id, bids, asks))
            return
        book.apply(bids, asks, final_id)
