"""The order books: ingest keeps each book in sync (Binance's procedure, REST snapshots inside the
weight budget) and publishes it to Kafka; the books consumer holds the top of each book in Redis."""

from __future__ import annotations

from cryptopipe.observability.grafana.panels import Dashboard, Panel, Query, Row, latency, rate, single
from cryptopipe.observability.prometheus import WINDOW, histogram_series

BOOK_E2E = "cryptopipe_book_e2e_latency_seconds"
BOOK_LATENCY = "cryptopipe_book_latency_seconds"


def by(label: str, level: str, metric: str) -> str:
    """A recorded per-second rate summed down to one of its labels."""
    return f"sum by ({label}) ({rate(level, metric)})"


def increase_by_symbol(metric: str) -> str:
    """A rare counter's count per symbol over the window (symbols with none are left out)."""
    return f"sum by (symbol) (increase({metric}_total[{WINDOW}])) > 0"


LATENCY = Row(
    f"Books in Redis: latency and freshness (mean / p95 / p99 over {WINDOW})",
    (
        latency(
            BOOK_E2E,
            "Exchange event to book in Redis",
            "Redis written minus the exchange's event time of the newest diff in the written state "
            "(raw, not skew-corrected).",
        ),
        latency(
            BOOK_LATENCY,
            "Receive to book in Redis",
            "Redis written minus local receive time of the newest record: our own share.",
        ),
        single(
            "Exchange event to book in Redis p99 by symbol",
            histogram_series(BOOK_E2E, "symbol", "p99"),
            "{{symbol}}",
            unit="s",
        ),
        single(
            "Seconds since each book was written",
            "max by (symbol) (cryptopipe_book_staleness_seconds)",
            "{{symbol}}",
            unit="s",
            description="The books consumer's clock per symbol, computed when scraped: it grows while a book "
            "is quiet, broken (waiting for a reset) or the consumer hangs.",
        ),
    ),
)

CONSUMER = Row(
    "Books consumer: records, breaks and resets",
    (
        Panel(
            "Records by outcome",
            (
                Query(by("outcome", "symbol_outcome", "cryptopipe_book_records"), "{{outcome}}"),
                Query(by("result", "symbol_result", "cryptopipe_book_writes"), "Redis writes: {{result}}"),
            ),
            unit="ops",
            description="applied + stale + waiting_for_reset (+ dead letters) = records consumed; a stale "
            "write is a state Redis already held (a replay or a second consumer).",
        ),
        Panel(
            f"Breaks, resets and warm starts (per {WINDOW})",
            (
                Query(
                    f"sum by (reason) (increase(cryptopipe_book_breaks_total[{WINDOW}]))", "break: {{reason}}"
                ),
                Query(
                    f"sum by (reason) (increase(cryptopipe_book_resets_applied_total[{WINDOW}]))",
                    "reset: {{reason}}",
                ),
                Query(
                    f"sum by (result) (increase(cryptopipe_book_warm_starts_total[{WINDOW}]))",
                    "warm start: {{result}}",
                ),
            ),
            description="A break gives the book up until the next reset (Redis keeps the last good state); "
            "a reset starts a sync epoch; a warm start rebuilds a book met mid-epoch from its checkpoint.",
        ),
    ),
)

SYNC = Row(
    "Ingest: keeping each book in sync",
    (
        single(
            "Books by state",
            "sum by (state) (cryptopipe_ingest_books)",
            "{{state}}",
            description="live: in sync; syncing: waiting for a snapshot.",
        ),
        Panel(
            "Diff-depth events",
            (
                Query(rate("outcome", "cryptopipe_ingest_book_events"), "{{outcome}}"),
                Query("cryptopipe_ingest_book_events_buffered", "buffered now"),
            ),
            unit="ops",
            description="Every event received is applied, skipped as older than the snapshot, dropped inside "
            "a counted resync gap, or buffered while its book waits for a snapshot.",
        ),
        Panel(
            f"Resyncs and gaps (per {WINDOW})",
            (
                Query(
                    f"sum by (reason) (increase(cryptopipe_ingest_book_resyncs_total[{WINDOW}]))",
                    "resync: {{reason}}",
                ),
                Query(
                    f"sum by (where) (increase(cryptopipe_ingest_book_gaps_total[{WINDOW}]))",
                    "gap: {{where}}",
                ),
            ),
            description="A resync discards a live book and rebuilds it from a snapshot; where=live gaps "
            "broke a live book, where=buffer emptied the buffer of a book still waiting for its snapshot.",
        ),
        single(
            f"Resyncs by symbol (per {WINDOW})",
            increase_by_symbol("cryptopipe_ingest_book_resyncs"),
            "{{symbol}}",
        ),
        Panel(
            "bookTicker checks",
            (Query(rate("result", "cryptopipe_ingest_book_ticker_checks"), "{{result}}"),),
            unit="ops",
            description="bookTicker frames against the book at the same update id: a mismatch means the "
            "book is wrong and resyncs it.",
        ),
        Panel(
            "Book records to Kafka",
            (
                Query(rate("kind", "cryptopipe_ingest_book_records_published"), "published: {{kind}}"),
                Query(by("reason", "kind_reason", "cryptopipe_ingest_book_records_lost"), "lost: {{reason}}"),
            ),
            unit="ops",
        ),
    ),
)

SNAPSHOTS = Row(
    "Ingest: REST snapshots inside the weight budget",
    (
        Panel(
            "Snapshot requests",
            (
                Query(rate("result", "cryptopipe_ingest_book_snapshot_requests"), "{{result}}"),
                Query(rate("cause", "cryptopipe_ingest_book_snapshot_waits"), "held back: {{cause}}"),
            ),
            unit="ops",
        ),
        Panel(
            "Snapshot queue and REST weight",
            (
                Query("cryptopipe_ingest_book_snapshot_queue", "symbols waiting for a snapshot"),
                Query("cryptopipe_ingest_rest_weight_used", "REST weight used this minute"),
            ),
        ),
        single(
            "Snapshot wait (seconds held back per second)",
            rate("cause", "cryptopipe_ingest_book_snapshot_wait_seconds"),
            "{{cause}}",
            description="Above 0: a resync storm is queued behind the REST weight budget "
            "(INGEST_REST_WEIGHT_PER_MINUTE or the exchange's X-MBX-USED-WEIGHT-1M) or a Retry-After.",
        ),
    ),
)

BOOKS = Dashboard(
    uid="cryptopipe-books",
    title="cryptopipe: order books",
    description="Depth streams kept in sync by ingest -> book-updates -> books consumer -> the top of each "
    "book in Redis: latency, freshness, resyncs, gaps, snapshots and the REST weight.",
    rows=(LATENCY, CONSUMER, SYNC, SNAPSHOTS),
)
