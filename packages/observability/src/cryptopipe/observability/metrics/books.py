"""Metrics of the books consumer: order-book records from Kafka to the top of each book in Redis."""

from __future__ import annotations

from cryptopipe.observability.metrics.define import counter, gauge, histogram

BOOK_RECORDS = counter(
    "cryptopipe_book_records",
    "Book records taken by the books consumer, by outcome: applied (a reset or an update moved the book), "
    "stale (the book already held it), waiting_for_reset (no live book for its epoch). With the dead "
    "letters they add up to the records consumed.",
    ("symbol", "outcome"),
    "books-consumer",
)
BOOK_BREAKS = counter(
    "cryptopipe_book_breaks",
    "Books given up until the next reset: gap (an update skipped past the book's id + 1), epoch (an "
    "update of an epoch whose reset was not seen), crossed (best bid >= best ask after an update).",
    ("symbol", "reason"),
    "books-consumer",
)
BOOK_RESETS = counter(
    "cryptopipe_book_resets_applied",
    "Reset records applied by the books consumer (new sync epochs), by the producer's reason.",
    ("symbol", "reason"),
    "books-consumer",
)
BOOK_WARM_STARTS = counter(
    "cryptopipe_book_warm_starts",
    "Symbols met mid-epoch with no book in memory (a restart): rebuilt from their checkpoint, "
    "no_checkpoint (none of their epoch) or failed (Kafka unreadable); all but rebuilt wait for a reset.",
    ("result",),
    "books-consumer",
)
BOOK_WRITES = counter(
    "cryptopipe_book_writes",
    "Book states sent to Redis (one per symbol per batch): written, or stale (Redis held the same or a "
    "newer epoch and update id; nothing changed).",
    ("symbol", "result"),
    "books-consumer",
)
BOOK_STALENESS = gauge(
    "cryptopipe_book_staleness_seconds",
    'Seconds since this consumer last wrote the symbol\'s book to Redis; for symbol="other" the largest '
    "among the symbols folded into it (the worst). Computed when scraped, so it grows even if the loop "
    "hangs.",
    ("symbol",),
    "books-consumer",
)
BOOK_LATENCY = histogram(
    "cryptopipe_book_latency_seconds",
    "Redis written minus local receive time of the newest record in a written book state.",
    ("symbol",),
    "books-consumer",
)
BOOK_E2E_LATENCY = histogram(
    "cryptopipe_book_e2e_latency_seconds",
    "Redis written minus the exchange's event time (E) of the newest diff in a written book state "
    "(raw, not skew-corrected): an exchange event until the book in Redis shows it.",
    ("symbol",),
    "books-consumer",
)
