"""Binance's "How to manage a local order book correctly", as a pure state machine per symbol.

:class:`BookSync` buffers diff events until a REST snapshot arrives, drops what the snapshot already
holds, refetches a snapshot older than the buffered stream, then applies each event whose ``U`` follows
the book's id. A gap, a crossed book or a stale snapshot discards the book and starts a resync. It does
no I/O: every call returns the outputs of :mod:`cryptopipe.ingest.book.outputs`, so the service wires
them to REST, Kafka and metrics, and tests drive it with any interleaving they like.

The rules, with ``L`` the snapshot's ``lastUpdateId`` and ``id`` the live book's update id:

- events arriving before a snapshot are buffered; the first one asks for a snapshot;
- on a snapshot, buffered events with ``u <= L`` are dropped; if the first left has ``U > L + 1``
  the snapshot is older than the stream and another is asked for (the buffer is kept);
- a live event with ``u <= id`` is skipped; one with ``U > id + 1`` breaks the book (``gap``);
  any other is applied (normally ``U == id + 1``; an overlap ``U <= id < u`` is Binance's first-event
  case and safe, since levels carry absolute quantities as of ``u``).
"""

from __future__ import annotations

import logging
from collections import deque

from cryptopipe.ingest.book.outputs import (
    Applied,
    BookReset,
    Buffered,
    Dropped,
    DropReason,
    ResyncReason,
    ResyncStarted,
    SnapshotIgnored,
    SnapshotNeeded,
    SnapshotReason,
    SyncCounters,
    SyncOutput,
)
from cryptopipe.ingest.errors import IngestError
from cryptopipe.schemas import DepthDiff, DepthSnapshot
from cryptopipe.schemas.orderbook import OrderBook

logger = logging.getLogger(__name__)

#: Events buffered while waiting for a snapshot, at most; older ones are dropped (``resync_gap``).
#: 10,000 is over 16 minutes of ``@depth@100ms``: a snapshot queue under Binance's REST weight limit
#: serves hundreds of symbols in less.
DEFAULT_MAX_BUFFERED = 10_000


class WrongSymbolError(IngestError):
    """An event or snapshot of another symbol was handed to a symbol's :class:`BookSync` (a wiring bug)."""

    def __init__(self, expected: str, got: str) -> None:
        self.expected = expected
        self.got = got
        super().__init__(f"BookSync for {expected!r} was given data for {got!r}")


class BookSync:
    """One symbol's order book, kept in sync with Binance's diff-depth stream.

    ``book`` is the live book, or None while it waits for a snapshot. ``counters`` accounts for
    every event fed (see :class:`SyncCounters`).
    """

    def __init__(self, symbol: str, *, max_buffered: int = DEFAULT_MAX_BUFFERED) -> None:
        if max_buffered < 1:
            raise ValueError(f"max_buffered must be at least 1, got {max_buffered}")
        self.symbol = symbol
        self.counters = SyncCounters()
        self._max_buffered = max_buffered
        self._book: OrderBook | None = None
        self._buffer: deque[DepthDiff] = deque()
        self._awaiting_snapshot = False
        #: A live book has been lost since the last snapshot: drops are part of a resync gap.
        self._resyncing = False
        #: The book came from a snapshot no buffered event confirmed, and no event has followed it yet.
        self._unconfirmed = False

    @property
    def book(self) -> OrderBook | None:
        """The live book (read it, never change it), or None while waiting for a snapshot."""
        return self._book

    @property
    def awaiting_snapshot(self) -> bool:
        """Whether a :class:`SnapshotNeeded` is outstanding (the caller keeps fetching until one arrives)."""
        return self._awaiting_snapshot

    def on_diff(self, diff: DepthDiff) -> list[SyncOutput]:
        """Take one diff-depth event, in the order the stream delivered it."""
        if diff.symbol != self.symbol:
            raise WrongSymbolError(self.symbol, diff.symbol)
        self.counters.fed += 1
        book = self._book
        if book is None:
            return self._buffer_diff(diff)
        if diff.final_update_id <= book.update_id:
            return [self._skip_older()]
        if diff.first_update_id > book.update_id + 1:
            reason: ResyncReason = "stale_snapshot" if self._unconfirmed else "gap"
            return self._resync(reason, diff.first_update_id) + self._buffer_diff(diff)
        return self._apply(book, diff)

    def on_snapshot(self, snapshot: DepthSnapshot) -> list[SyncOutput]:
        """Take a REST depth snapshot; it is used only while there is no live book."""
        if snapshot.symbol != self.symbol:
            raise WrongSymbolError(self.symbol, snapshot.symbol)
        if self._book is not None:
            self.counters.snapshots_ignored += 1
            return [SnapshotIgnored(self.symbol, snapshot.last_update_id)]
        self._awaiting_snapshot = False
        last_id = snapshot.last_update_id
        buffer = self._buffer
        confirmed = bool(buffer)
        outputs: list[SyncOutput] = []
        older = 0
        while older < len(buffer) and buffer[older].final_update_id <= last_id:
            older += 1
        if older:
            outputs.append(
                self._drop_buffered(older, "resync_gap" if self._resyncing else "older_than_snapshot")
            )
        if buffer and buffer[0].first_update_id > last_id + 1:
            logger.info(
                "%s: snapshot at %d is older than the first buffered event (U=%d); fetching another",
                self.symbol,
                last_id,
                buffer[0].first_update_id,
            )
            return outputs + self._request("stale_snapshot")
        return outputs + self._go_live(snapshot, confirmed=confirmed)

    def resync(self, reason: ResyncReason = "requested") -> list[SyncOutput]:
        """Discard the live book on the caller's word (a reconnect that may have lost events, ...)."""
        if self._book is None:
            return self._request(self._snapshot_reason())
        return self._resync(reason, self._book.update_id)

    def _go_live(self, snapshot: DepthSnapshot, *, confirmed: bool) -> list[SyncOutput]:
        """Build the book from the snapshot, then apply what is left in the buffer, in order."""
        book = self._book = OrderBook.from_snapshot(snapshot)
        self.counters.snapshots_used += 1
        self._resyncing = False
        self._unconfirmed = not confirmed
        outputs: list[SyncOutput] = [BookReset(self.symbol, book.update_id)]
        if book.is_crossed():
            return outputs + self._resync("crossed", book.update_id)
        buffer = self._buffer
        while buffer and self._book is not None:
            self.counters.buffered -= 1
            outputs += self._apply(book, buffer.popleft())
        return outputs

    def _apply(self, book: OrderBook, diff: DepthDiff) -> list[SyncOutput]:
        book.apply(diff)
        self.counters.applied += 1
        self._unconfirmed = False
        if book.is_crossed():
            return [Applied(diff), *self._resync("crossed", book.update_id)]
        return [Applied(diff)]

    def _skip_older(self) -> Dropped:
        self.counters.skipped_older_than_snapshot += 1
        return Dropped(self.symbol, "older_than_snapshot", 1)

    def _buffer_diff(self, diff: DepthDiff) -> list[SyncOutput]:
        """Hold an event until a snapshot comes; the buffer stays one contiguous run of updates."""
        buffer = self._buffer
        outputs: list[SyncOutput] = []
        if buffer:
            last_id = buffer[-1].final_update_id
            if diff.final_update_id <= last_id:
                return [self._skip_older()]
            if diff.first_update_id > last_id + 1:
                # No snapshot can bridge a hole in the buffer: what precedes it is useless.
                self.counters.buffer_gaps += 1
                outputs.append(self._drop_buffered(len(buffer), "resync_gap"))
        if len(buffer) >= self._max_buffered:
            outputs.append(self._drop_buffered(len(buffer) - self._max_buffered + 1, "resync_gap"))
        buffer.append(diff)
        self.counters.buffered += 1
        outputs.append(Buffered(self.symbol, diff.final_update_id, len(buffer)))
        return outputs + self._request(self._snapshot_reason())

    def _drop_buffered(self, count: int, reason: DropReason) -> Dropped:
        """Drop the ``count`` oldest buffered events."""
        for _ in range(count):
            self._buffer.popleft()
        self.counters.buffered -= count
        if reason == "resync_gap":
            self.counters.in_resync_gap += count
        else:
            self.counters.skipped_older_than_snapshot += count
        return Dropped(self.symbol, reason, count)

    def _snapshot_reason(self) -> SnapshotReason:
        return "initial" if not self._resyncing and self.counters.snapshots_used == 0 else "resync"

    def _request(self, reason: SnapshotReason) -> list[SyncOutput]:
        if self._awaiting_snapshot:
            return []
        self._awaiting_snapshot = True
        self.counters.snapshot_requests[reason] += 1
        return [SnapshotNeeded(self.symbol, reason)]

    def _resync(self, reason: ResyncReason, first_update_id: int) -> list[SyncOutput]:
        """Discard the live book and ask for a snapshot; events are buffered until it comes."""
        book = self._book
        assert book is not None
        logger.warning(
            "%s: order book resync (%s) at update id %d, next U=%d",
            self.symbol,
            reason,
            book.update_id,
            first_update_id,
        )
        self._book = None
        self._resyncing = True
        self._unconfirmed = False
        self.counters.resyncs[reason] += 1
        return [ResyncStarted(self.symbol, reason, book.update_id, first_update_id), *self._request("resync")]
