"""The prices branch: exchange -> ingest -> Kafka -> prices consumer -> Redis."""

from __future__ import annotations

from cryptopipe.observability.grafana.panels import (
    CONSUMER_BATCH,
    E2E,
    NETWORK,
    NETWORK_CORRECTED,
    PRODUCER_LATENCY,
    SYSTEM,
    Dashboard,
    Panel,
    Query,
    Row,
    latency,
    rate,
    single,
)
from cryptopipe.observability.prometheus import LAG_SERIES, STALL_METRIC, WINDOW, histogram_series

PRICES = Dashboard(
    uid="cryptopipe-prices",
    title="cryptopipe: prices branch",
    description="Exchange -> ingest -> Kafka -> prices consumer -> Redis: latency split, throughput, lag.",
    rows=(
        Row(
            f"Latency (mean / p95 / p99 over {WINDOW})",
            (
                latency(
                    E2E, "End-to-end latency", "Redis written minus exchange trade time (not skew-corrected)."
                ),
                latency(SYSTEM, "System latency", "Redis written minus local receive time: our own share."),
                Panel(
                    "Kafka producer: queue and broker round trip",
                    tuple(
                        Query(
                            f'max by (stage) ({PRODUCER_LATENCY}{{quantile="{quantile}"}})',
                            f"{{{{stage}}}} {quantile}",
                        )
                        for quantile in ("p50", "p99")
                    ),
                    unit="s",
                    description="librdkafka's own windows in ingest's trade producer "
                    "(INGEST_STATISTICS_INTERVAL_MS): queue = produce() until the record is in a request "
                    "(the linger), outbuf = a request waiting to be sent, rtt = a produce request until "
                    "the broker's answer. Where the system latency's broker leg goes.",
                ),
                latency(NETWORK, "Network latency", "Local receive time minus exchange trade time (raw)."),
                latency(
                    NETWORK_CORRECTED,
                    "Network latency, skew-corrected",
                    "Network latency plus the estimated clock offset.",
                ),
                single(
                    "End-to-end p99 by symbol",
                    histogram_series(E2E, "symbol", "p99"),
                    "{{symbol}}",
                    unit="s",
                ),
                Panel(
                    "System share of end-to-end latency",
                    (
                        Query(
                            f"{histogram_series(SYSTEM, 'all', 'mean')}"
                            f" / {histogram_series(E2E, 'all', 'mean')}",
                            "mean system / mean end-to-end",
                        ),
                        Query("cryptopipe_system_latency_share", "{{symbol}} last batch"),
                    ),
                    unit="percentunit",
                ),
            ),
        ),
        Row(
            "Throughput",
            (
                Panel(
                    "Trades per second",
                    (
                        Query(rate("symbol", "cryptopipe_ingest_trades_received"), "{{symbol}} received"),
                        Query(rate("symbol", "cryptopipe_ingest_trades_published"), "{{symbol}} published"),
                        Query(rate("symbol", "cryptopipe_prices_written"), "{{symbol}} written to Redis"),
                    ),
                    unit="ops",
                ),
                Panel(
                    "Consumer throughput",
                    (
                        Query(
                            rate("consumer_topic", "cryptopipe_consumer_messages"), "{{consumer}} {{topic}}"
                        ),
                        Query(
                            "cryptopipe_consumer_throughput_msgs_per_second", "{{consumer}} (consumer's own)"
                        ),
                    ),
                    unit="ops",
                ),
            ),
        ),
        Row(
            "Lag, losses and internals",
            (
                single(
                    "Consumer lag (records)",
                    LAG_SERIES,
                    "{{consumer}} {{topic}} ({{source}})",
                    description="source=consumer: the consumers' own view; "
                    "source=broker: kafka-exporter's (compose).",
                ),
                Panel(
                    "Lost and dead-lettered",
                    (
                        Query(rate("reason", "cryptopipe_ingest_trades_lost"), "lost: {{reason}}"),
                        Query(
                            f"sum by (component, reason) (rate(cryptopipe_dead_letters_total[{WINDOW}]))",
                            "dead-lettered: {{component}} {{reason}}",
                        ),
                        Query(rate("symbol", "cryptopipe_ingest_gaps"), "gaps: {{symbol}}"),
                    ),
                    unit="ops",
                ),
                CONSUMER_BATCH,
                latency(
                    "cryptopipe_redis_write_seconds",
                    "Redis write",
                    "One pipelined write.",
                    "consumer",
                    "consumer",
                ),
                single(
                    "Consumer stalled for",
                    f"max by (consumer) ({STALL_METRIC})",
                    "{{consumer}}",
                    unit="s",
                    description="Seconds records have been waiting (lag > 0) with none written to Redis; "
                    "0 while caught up. The consumer seeks back after its stall timeout (default 5 s), "
                    "recreates its Kafka consumer one timeout later; the ConsumerStalled alert fires "
                    "above 10 s.",
                ),
                Panel(
                    f"Consumer stalls and recoveries (per {WINDOW})",
                    (
                        Query(
                            f"sum by (consumer) (increase(cryptopipe_consumer_stalls_total[{WINDOW}]))",
                            "{{consumer}} stalls",
                        ),
                        Query(
                            "sum by (consumer, action) "
                            f"(increase(cryptopipe_consumer_stall_recoveries_total[{WINDOW}]))",
                            "{{consumer}} {{action}}",
                        ),
                    ),
                    description="seek: stalled partitions back to the last written offset; "
                    "recreate: commit, close and recreate the Kafka consumer, then resubscribe.",
                ),
            ),
        ),
    ),
)
