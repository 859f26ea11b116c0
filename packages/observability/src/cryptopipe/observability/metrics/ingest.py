"""Metrics of ingest: the exchange stream, its gaps and backfill, and the trade producer."""

from __future__ import annotations

from cryptopipe.observability.metrics.define import counter, gauge, histogram

TRADES_RECEIVED = counter(
    "cryptopipe_ingest_trades_received",
    "Trades parsed from the exchange stream (live, not backfilled).",
    ("symbol",),
    "ingest",
)
TRADES_PUBLISHED = counter(
    "cryptopipe_ingest_trades_published",
    "Trades the broker acknowledged (delivery report OK), incl. backfill.",
    ("symbol",),
    "ingest",
)
TRADES_LOST = counter(
    "cryptopipe_ingest_trades_lost",
    "Trades that will never reach Kafka: buffer bound hit or delivery failed for good.",
    ("reason",),
    "ingest",
)
PRODUCER_BUFFERED = gauge(
    "cryptopipe_ingest_producer_buffered",
    "Trades waiting for a broker acknowledgement.",
    (),
    "ingest",
)
PRODUCER_LATENCY = gauge(
    "cryptopipe_kafka_producer_latency_seconds",
    "The trade producer's own latency, per broker, from librdkafka's statistics (one window each "
    "INGEST_STATISTICS_INTERVAL_MS): stage=queue is produce() until the record is in a request "
    "(the linger, batching), stage=outbuf a request waiting to be sent, stage=rtt a produce "
    "request until the broker's answer (the log append with acks=all); quantile p50, p99, max.",
    ("broker", "stage", "quantile"),
    "ingest",
)
CONNECTIONS = gauge(
    "cryptopipe_ingest_connections",
    "Open WebSocket connections to the exchange.",
    (),
    "ingest",
)
RECONNECTS = counter(
    "cryptopipe_ingest_reconnects",
    "WebSocket reconnects, by reason.",
    ("reason",),
    "ingest",
)
GAPS = counter(
    "cryptopipe_ingest_gaps",
    "Trade-id gaps detected in the stream.",
    ("symbol",),
    "ingest",
)
BACKFILLED = counter(
    "cryptopipe_ingest_trades_backfilled",
    "Trades recovered from the REST backfill after a gap.",
    ("symbol",),
    "ingest",
)
UNFILLED = counter(
    "cryptopipe_ingest_trades_unfilled",
    "Trade ids inside a gap that the backfill could not recover.",
    ("symbol",),
    "ingest",
)
DUPLICATES = counter(
    "cryptopipe_ingest_trades_duplicate",
    "Trades received again (id at or below the last published one, e.g. after a reconnect): dropped.",
    ("symbol",),
    "ingest",
)
RESUMED_SYMBOLS = gauge(
    "cryptopipe_ingest_resumed_symbols",
    "Symbols that took up, at start, from their last trade id read back from the end of prices "
    "(outcome=resumed: the trades played while no ingest ran are a gap the backfill fills), or "
    "start from their first live trade (outcome=not_resumed: no record among the last "
    "INGEST_RESUME_WINDOW of their partition, or INGEST_RESUME_FROM_KAFKA=false).",
    ("outcome",),
    "ingest",
)
RESUME_SECONDS = gauge(
    "cryptopipe_ingest_resume_seconds",
    "How long reading each symbol's last trade id back from prices took at start.",
    (),
    "ingest",
)
NETWORK_LATENCY = histogram(
    "cryptopipe_network_latency_seconds",
    "Receive time minus exchange trade time (raw, not corrected for clock skew).",
    ("symbol",),
    "ingest",
)
INGEST_PROCESSING = histogram(
    "cryptopipe_ingest_processing_seconds",
    "Time from frame received to record handed to the producer.",
    (),
    "ingest",
)
