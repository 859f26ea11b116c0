"""The reading side of the order-book contract: one symbol's book followed record by record.

:class:`BookFollower` holds the book that ``book-updates`` describes so far and decides, for each
record, what it is: a reset replaces the book; an update of the book's epoch is applied when it
follows the book's id (:func:`cryptopipe.schemas.continuity`), skipped when it is older, and breaks
the book when updates are missing. A broken book stays broken until the next reset. Every reader
of the contract follows books with it (the books consumer and the rebuild from Kafka alone in
:mod:`cryptopipe.store`, the alerting job's book rules), so they agree record for record.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from cryptopipe.schemas.book_messages import (
    BookCheckpoint,
    BookRecord,
    BookResetRecord,
    BookUpdateRecord,
    continuity,
)
from cryptopipe.schemas.orderbook import OrderBook

logger = logging.getLogger(__name__)

#: What became of one record: ``applied`` (a reset or an update moved the book), ``stale`` (the book
#: already holds it: older epoch or update ids), ``waiting_for_reset`` (no live book for its epoch:
#: never started, or broken since a gap).
Outcome = Literal["applied", "stale", "waiting_for_reset"]
OUTCOMES: tuple[Outcome, ...] = ("applied", "stale", "waiting_for_reset")

#: Why a live book was given up until the next reset: ``gap`` (an update skipped past the book's id
#: + 1), ``epoch`` (an update of a newer epoch than the book's, whose reset was not seen), ``crossed``
#: (the best bid reached the best ask after an update).
BreakReason = Literal["gap", "epoch", "crossed"]
BREAK_REASONS: tuple[BreakReason, ...] = ("gap", "epoch", "crossed")


@dataclass(slots=True)
class FollowCounts:
    """Every record taken, in exactly one outcome; ``breaks`` and ``resets`` are events among them."""

    applied: int = 0
    stale: int = 0
    waiting_for_reset: int = 0
    resets: int = 0
    breaks: int = 0

    @property
    def taken(self) -> int:
        return self.applied + self.stale + self.waiting_for_reset


class BookFollower:
    """One symbol's book as ``book-updates`` describes it; :meth:`take` each record in offset order.

    ``book`` is the live book (read it, never change it), None until a reset or a checkpoint, and
    again from a break until the next reset. ``epoch`` is the live book's epoch. ``last_break`` says
    why the book was last given up.
    """

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.book: OrderBook | None = None
        self.epoch: int | None = None
        self.counts = FollowCounts()
        self.last_break: BreakReason | None = None

    @property
    def position(self) -> tuple[int, int] | None:
        """(epoch, update id) of the live book, the order in which books are newer; None without one."""
        if self.book is None or self.epoch is None:
            return None
        return self.epoch, self.book.update_id

    def start(self, checkpoint: BookCheckpoint) -> None:
        """Hold the checkpoint's book, as if its epoch's records up to it had been taken."""
        self.adopt(
            OrderBook(
                checkpoint.symbol,
                checkpoint.update_id,
                checkpoint.bids,
                checkpoint.asks,
                checkpoint.event_time_us,
            ),
            checkpoint.epoch,
        )

    def adopt(self, book: OrderBook, epoch: int) -> None:
        """Hold ``book`` (of ``epoch``), rebuilt elsewhere, as the live book."""
        self.book = book
        self.epoch = epoch

    def take(self, record: BookRecord) -> Outcome:
        """Apply, skip or refuse one record; returns its outcome (also counted in ``counts``)."""
        outcome = self._reset(record) if isinstance(record, BookResetRecord) else self._update(record)
        counts = self.counts
        if outcome == "applied":
            counts.applied += 1
        elif outcome == "stale":
            counts.stale += 1
        else:
            counts.waiting_for_reset += 1
        return outcome

    def _reset(self, record: BookResetRecord) -> Outcome:
        if self.epoch is not None and record.epoch < self.epoch:
            return "stale"
        if self.book is not None and (record.epoch, record.update_id) <= (self.epoch, self.book.update_id):
            return "stale"
        self.book = OrderBook(record.symbol, record.update_id, record.bids, record.asks, record.event_time_us)
        self.epoch = record.epoch
        self.counts.resets += 1
        return "applied"

    def _update(self, record: BookUpdateRecord) -> Outcome:
        if self.epoch is not None and record.epoch < self.epoch:
            return "stale"
        book = self.book
        if book is None:
            return "waiting_for_reset"
        if record.epoch > (self.epoch or 0):
            return self._break("epoch", record)
        step = continuity(book.update_id, record)
        if step == "stale":
            return "stale"
        if step == "gap":
            return self._break("gap", record)
        book.apply(record)
        if book.is_crossed():
            self._break("crossed", record)
        return "applied"

    def _break(self, reason: BreakReason, record: BookUpdateRecord) -> Outcome:
        """Give the live book up until the next reset; the record that revealed it waits too."""
        book = self.book
        assert book is not None
        logger.warning(
            "%s: book broken (%s) at epoch %s update id %d by U=%d u=%d (epoch %d); waiting for a reset",
            self.symbol,
            reason,
            self.epoch,
            book.update_id,
            record.first_update_id,
            record.final_update_id,
            record.epoch,
        )
        self.book = None
        self.last_break = reason
        self.counts.breaks += 1
        return "waiting_for_reset"
