"""Metrics of the Kafka-to-Redis consumers (prices and alerts share one loop)."""

from __future__ import annotations

from cryptopipe.observability.metrics.define import BATCH_SIZE_BUCKETS, counter, gauge, histogram

CONSUMED = counter(
    "cryptopipe_consumer_messages",
    "Records consumed and written to Redis.",
    ("consumer", "topic"),
    "consumer",
)
CONSUMER_LAG = gauge(
    "cryptopipe_consumer_lag",
    "Records behind the partition end (end = max of broker high watermark and highest offset fetched + 1).",
    ("consumer", "topic", "partition"),
    "consumer",
)
CONSUMER_ASSIGNED = gauge(
    "cryptopipe_consumer_assigned_partitions",
    "Partitions currently assigned to this consumer (0 until it joined).",
    ("consumer", "topic"),
    "consumer",
)
CONSUMER_BATCH = histogram(
    "cryptopipe_consumer_batch_seconds",
    "Processing time of one consumed batch (decode + Redis write).",
    ("consumer",),
    "consumer",
)
CONSUMER_BATCH_SIZE = histogram(
    "cryptopipe_consumer_batch_size",
    "Records per consumed batch.",
    ("consumer",),
    "consumer",
    buckets=BATCH_SIZE_BUCKETS,
)
CONSUMER_THROUGHPUT = gauge(
    "cryptopipe_consumer_throughput_msgs_per_second",
    "Records per second over the last few seconds.",
    ("consumer",),
    "consumer",
)
CONSUMER_SECONDS_SINCE_PROGRESS = gauge(
    "cryptopipe_consumer_seconds_since_progress",
    "Seconds records have been waiting (lag > 0) without any being written to Redis, worst partition; "
    "0 while caught up (idle is not a stall). Computed when scraped, so it grows even if the loop hangs.",
    ("consumer",),
    "consumer",
)
CONSUMER_STALLS = counter(
    "cryptopipe_consumer_stalls",
    "Stalls detected: records waiting and none written for the stall timeout (default 5 s).",
    ("consumer",),
    "consumer",
)
CONSUMER_STALL_RECOVERIES = counter(
    "cryptopipe_consumer_stall_recoveries",
    "Recovery actions of a stalled consumer: seek (stalled partitions back to the last written offset), "
    "recreate (commit, close and recreate the Kafka consumer, then resubscribe).",
    ("consumer", "action"),
    "consumer",
)
CONSUMER_REDELIVERED = counter(
    "cryptopipe_consumer_redelivered",
    "Records read a second time in one consumer's life: at or below the highest offset it had already "
    "handled in their partition (its position went back to the last commit, e.g. a commit failed while "
    "the broker was away), and written again idempotently.",
    ("consumer",),
    "consumer",
)
PRICES_WRITTEN = counter(
    "cryptopipe_prices_written",
    "Trades written to Redis history; latest price moved forward if newer.",
    ("symbol",),
    "consumer",
)
STALE_PRICES = counter(
    "cryptopipe_prices_stale",
    "Trades older than the stored latest price (replays, duplicates): not applied.",
    ("symbol",),
    "consumer",
)
SYSTEM_LATENCY = histogram(
    "cryptopipe_system_latency_seconds",
    "Redis written minus local receive time (our own pipeline's share).",
    ("symbol",),
    "consumer",
)
E2E_LATENCY = histogram(
    "cryptopipe_e2e_latency_seconds",
    "Redis written minus exchange trade time (raw, not skew-corrected).",
    ("symbol",),
    "consumer",
)
SYSTEM_SHARE = gauge(
    "cryptopipe_system_latency_share",
    "System latency / end-to-end latency, mean over the symbol's trades in the last batch that had any; "
    'for symbol="other" over the folded symbols\' trades together.',
    ("symbol",),
    "consumer",
)
REDIS_WRITE = histogram(
    "cryptopipe_redis_write_seconds",
    "Duration of one pipelined Redis write of a batch.",
    ("consumer",),
    "consumer",
)
