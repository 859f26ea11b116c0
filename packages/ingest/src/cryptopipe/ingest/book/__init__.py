"""Local order books kept exactly in sync with Binance's diff-depth streams, without I/O.

:class:`BookSync` implements Binance's "How to manage a local order book correctly" for one symbol
and says what to do next (fetch a snapshot, publish an applied diff, count a resync); the ingest
service does the fetching, publishing and counting. :class:`OrderBook` is the book itself. The
reason labels (``ResyncReason``, ...) live in :mod:`cryptopipe.ingest.book.outputs`.
"""

from cryptopipe.ingest.book.outputs import (
    Applied,
    BookReset,
    Buffered,
    Dropped,
    ResyncStarted,
    SnapshotIgnored,
    SnapshotNeeded,
    SyncCounters,
    SyncOutput,
)
from cryptopipe.ingest.book.sync import DEFAULT_MAX_BUFFERED, BookSync, WrongSymbolError
from cryptopipe.schemas.orderbook import OrderBook

__all__ = [
    "DEFAULT_MAX_BUFFERED",
    "Applied",
    "BookReset",
    "BookSync",
    "Buffered",
    "Dropped",
    "OrderBook",
    "ResyncStarted",
    "SnapshotIgnored",
    "SnapshotNeeded",
    "SyncCounters",
    "SyncOutput",
    "WrongSymbolError",
]
