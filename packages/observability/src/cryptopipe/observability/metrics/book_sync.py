"""Metrics of ingest's order books: the sync procedure, its REST snapshots and the book records.

High-volume counters (events, records, ticker checks) have no ``symbol`` label, so 1,500 symbols
cost a handful of series; the rare ones (resyncs) name the symbol.
"""

from __future__ import annotations

from cryptopipe.observability.metrics.define import counter, gauge

BOOK_EVENTS = counter(
    "cryptopipe_ingest_book_events",
    "Diff-depth events by final outcome: applied (to a live book), skipped_older_than_snapshot "
    "(already in the book), in_resync_gap (dropped inside a counted resync). Events waiting for a "
    "snapshot are cryptopipe_ingest_book_events_buffered; together they are every event received.",
    ("outcome",),
    "ingest",
)
BOOK_EVENTS_BUFFERED = gauge(
    "cryptopipe_ingest_book_events_buffered",
    "Diff-depth events buffered now, waiting for their symbol's snapshot.",
    (),
    "ingest",
)
BOOK_RESYNCS = counter(
    "cryptopipe_ingest_book_resyncs",
    "Live books discarded and resynced from a new snapshot, by reason: gap (an event skipped "
    "update ids), stale_snapshot (the first event after a snapshot did not follow it), crossed "
    "(best bid at or above best ask), requested (by ingest itself: a book record could not be "
    "delivered, or a bookTicker disagreed with the book at the same update id).",
    ("symbol", "reason"),
    "ingest",
)
BOOK_GAPS = counter(
    "cryptopipe_ingest_book_gaps",
    "Holes in a symbol's update ids: where=live broke a live book (a resync), where=buffer emptied "
    "the buffer of a book waiting for its snapshot.",
    ("where",),
    "ingest",
)
BOOKS = gauge(
    "cryptopipe_ingest_books",
    "Order books by state: live (in sync) or syncing (waiting for a snapshot).",
    ("state",),
    "ingest",
)
SNAPSHOT_REQUESTS = counter(
    "cryptopipe_ingest_book_snapshot_requests",
    "GET /api/v3/depth requests by result: used (a book was built from it), stale (older than "
    "the buffered stream: fetched again), ignored (the book was live by then), rate_limited "
    "(HTTP 429/418: Retry-After honoured), failed (network, other HTTP error, unreadable body).",
    ("result",),
    "ingest",
)
SNAPSHOT_QUEUE = gauge(
    "cryptopipe_ingest_book_snapshot_queue",
    "Symbols waiting for a depth snapshot request to be sent.",
    (),
    "ingest",
)
SNAPSHOT_WAITS = counter(
    "cryptopipe_ingest_book_snapshot_waits",
    "Snapshot requests held back to stay inside the REST weight budget: cause=weight "
    "(INGEST_REST_WEIGHT_PER_MINUTE or the exchange's X-MBX-USED-WEIGHT-1M), retry_after (a "
    "429/418's Retry-After).",
    ("cause",),
    "ingest",
)
SNAPSHOT_WAIT_SECONDS = counter(
    "cryptopipe_ingest_book_snapshot_wait_seconds",
    "Seconds snapshot requests were held back by the REST weight budget, by cause.",
    ("cause",),
    "ingest",
)
REST_WEIGHT_USED = gauge(
    "cryptopipe_ingest_rest_weight_used",
    "REST request weight used this minute, as the exchange last reported it (X-MBX-USED-WEIGHT-1M).",
    (),
    "ingest",
)
BOOK_RECORDS_PUBLISHED = counter(
    "cryptopipe_ingest_book_records_published",
    "Order-book records the broker acknowledged, by kind: reset and update (book-updates), "
    "checkpoint (book-snapshots).",
    ("kind",),
    "ingest",
)
BOOK_RECORDS_LOST = counter(
    "cryptopipe_ingest_book_records_lost",
    "Order-book records that will never reach Kafka, by kind and reason (buffer_full, shutdown, "
    "a delivery error); a lost reset or update is followed by a resync of its symbol.",
    ("kind", "reason"),
    "ingest",
)
BOOK_TICKER_CHECKS = counter(
    "cryptopipe_ingest_book_ticker_checks",
    "bookTicker frames checked against the book at the same update id: result=match, mismatch "
    "(best bid or ask differ: the book is wrong and is resynced), unchecked (the book never stood "
    "at that id).",
    ("result",),
    "ingest",
)
