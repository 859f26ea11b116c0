"""What :class:`~cryptopipe.ingest.book.sync.BookSync` tells its caller, and the counters it keeps.

The sync machine does no I/O: each call returns these outputs in order, and the ingest service turns
them into REST requests (:class:`SnapshotNeeded`), Kafka records (:class:`BookReset` then
:class:`Applied`, so a consumer can rebuild the exact book) and metrics (:class:`ResyncStarted`,
:class:`Dropped`). Reasons are short stable labels, usable as metric labels.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

from cryptopipe.schemas import DepthDiff

#: Why a live book was discarded:
#: ``gap`` an event's ``U`` skipped past the book's id + 1 (events were missed);
#: ``stale_snapshot`` the first event after a snapshot taken with nothing buffered did not follow it;
#: ``crossed`` the best bid reached the best ask, which no real book shows;
#: ``requested`` the caller asked (a reconnect whose continuity is unknown, an operator, ...).
ResyncReason = Literal["gap", "stale_snapshot", "crossed", "requested"]

#: Why a snapshot is wanted: the first one, one after a resync, or a refetch because the one
#: received was older than the first buffered event.
SnapshotReason = Literal["initial", "resync", "stale_snapshot"]

#: Why buffered or incoming events were dropped:
#: ``older_than_snapshot`` every update in them is already in the book (or the buffer);
#: ``resync_gap`` they fell inside a resync: covered by the new snapshot, before a gap in the
#: buffer, or pushed out of a full buffer.
DropReason = Literal["older_than_snapshot", "resync_gap"]


@dataclass(frozen=True, slots=True)
class SnapshotNeeded:
    """Fetch ``GET /api/v3/depth`` for the symbol and hand it to :meth:`BookSync.on_snapshot`."""

    symbol: str
    reason: SnapshotReason


@dataclass(frozen=True, slots=True)
class BookReset:
    """The book was rebuilt from a snapshot and is live at ``update_id``: a discontinuity downstream."""

    symbol: str
    update_id: int


@dataclass(frozen=True, slots=True)
class Applied:
    """``diff`` was applied: the book is now at ``diff.final_update_id``."""

    diff: DepthDiff


@dataclass(frozen=True, slots=True)
class Buffered:
    """The event is held until a snapshot arrives; ``size`` events are buffered now."""

    symbol: str
    final_update_id: int
    size: int


@dataclass(frozen=True, slots=True)
class Dropped:
    """``count`` events were dropped for ``reason``; none of them was applied."""

    symbol: str
    reason: DropReason
    count: int


@dataclass(frozen=True, slots=True)
class ResyncStarted:
    """The live book (at ``book_update_id``) was discarded; events are buffered until a new snapshot.

    ``first_update_id`` is the ``U`` of the event that revealed the break (the book's own id for
    ``crossed`` and ``requested``).
    """

    symbol: str
    reason: ResyncReason
    book_update_id: int
    first_update_id: int


@dataclass(frozen=True, slots=True)
class SnapshotIgnored:
    """A snapshot arrived while the book was live; it was not used (``update_id`` is its id)."""

    symbol: str
    update_id: int


SyncOutput = SnapshotNeeded | BookReset | Applied | Buffered | Dropped | ResyncStarted | SnapshotIgnored


@dataclass(slots=True)
class SyncCounters:
    """Running totals for one symbol. Every event fed is in exactly one of the four event counters.

    ``fed == applied + skipped_older_than_snapshot + in_resync_gap + buffered`` at all times;
    ``buffered`` is how many wait in the buffer now (they move to another counter later).
    """

    fed: int = 0
    applied: int = 0
    skipped_older_than_snapshot: int = 0
    in_resync_gap: int = 0
    buffered: int = 0
    snapshots_used: int = 0
    snapshots_ignored: int = 0
    snapshot_requests: Counter[SnapshotReason] = field(default_factory=Counter)
    resyncs: Counter[ResyncReason] = field(default_factory=Counter)
    buffer_gaps: int = 0

    def balanced(self) -> bool:
        """Whether every event fed is accounted for exactly once."""
        accounted = self.applied + self.skipped_older_than_snapshot + self.in_resync_gap + self.buffered
        return self.fed == accounted
