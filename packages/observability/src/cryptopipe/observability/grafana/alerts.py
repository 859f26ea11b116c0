"""The alerts branch: Kafka -> Spark structured streaming -> alerts topic -> alerts consumer -> Redis."""

from __future__ import annotations

from cryptopipe.observability.grafana.panels import (
    CONSUMER_BATCH,
    Dashboard,
    Panel,
    Query,
    Row,
    latency,
    rate,
    single,
)
from cryptopipe.observability.prometheus import LAG_SERIES, WINDOW, histogram_series

BATCH = "cryptopipe_alerting_batch_duration_seconds"

ALERTS = Dashboard(
    uid="cryptopipe-alerts",
    title="cryptopipe: alerts branch",
    description="Kafka -> Spark structured streaming -> alerts topic -> alerts consumer -> Redis.",
    rows=(
        Row(
            "Spark micro-batches",
            (
                latency(
                    BATCH, "Micro-batch time", "Duration of one micro-batch (progress triggerExecution)."
                ),
                single(
                    "Micro-batch time by phase (p95)",
                    histogram_series("cryptopipe_alerting_batch_phase_seconds", "phase", "p95"),
                    "{{phase}}",
                    unit="s",
                    description="Spark's durationMs: addBatch, latestOffset, walCommit, commitOffsets ...",
                ),
                Panel(
                    "Input and output rate",
                    (
                        Query("cryptopipe_alerting_input_rows_per_second", "input rows/s (last batch)"),
                        Query(
                            "cryptopipe_alerting_processed_rows_per_second", "processed rows/s (last batch)"
                        ),
                        Query(rate("all", "cryptopipe_alerting_input_rows"), f"rows read/s ({WINDOW})"),
                        Query(rate("rule_kind", "cryptopipe_alerting_alerts"), "alerts/s: {{rule}} {{kind}}"),
                    ),
                    unit="ops",
                ),
                Panel(
                    "Dropped rows",
                    (
                        Query(
                            rate("all", "cryptopipe_alerting_rows_dropped_by_watermark"), "late (watermark)"
                        ),
                        Query(rate("all", "cryptopipe_alerting_invalid_rows"), "not a trade"),
                    ),
                    unit="ops",
                ),
                single(
                    "Watermark delay",
                    "cryptopipe_alerting_watermark_delay_seconds",
                    "wall clock - watermark",
                    unit="s",
                ),
                single(
                    "Spark query lag (records)",
                    "cryptopipe_alerting_lag",
                    "{{topic}} partition {{partition}}",
                    description="Prices records the alerting query has not read: each partition's high "
                    "watermark (asked every second) minus the end offset of the query's last micro-batch.",
                ),
                Panel(
                    "State and restarts",
                    (
                        Query("cryptopipe_alerting_state_rows", "state rows (open windows)"),
                        Query(
                            f"increase(cryptopipe_alerting_query_restarts_total[{WINDOW}])", "query restarts"
                        ),
                    ),
                ),
            ),
        ),
        Row(
            "Alert latency",
            (
                latency(
                    "cryptopipe_alert_latency_seconds",
                    "Alert latency (to Redis)",
                    "Alert written to Redis minus receive time of the trade that closed (or crossed) it.",
                    level="kind",
                    by="kind",
                ),
                latency(
                    "cryptopipe_alerting_publish_latency_seconds",
                    "Alert publish latency (to Kafka)",
                    "Alert acknowledged by Kafka minus the same trade's receive time.",
                    level="kind",
                    by="kind",
                ),
                latency(
                    "cryptopipe_alerting_express_publish_latency_seconds",
                    "Express-lane publish latency (to Kafka)",
                    "Express-lane alert acknowledged by Kafka minus receive time of the trade deciding it.",
                    level="kind",
                    by="kind",
                ),
                single(
                    "Alerts consumer lag (records)",
                    f'{LAG_SERIES}{{topic=~".*alerts"}}',
                    "{{consumer}} {{topic}} ({{source}})",
                ),
                CONSUMER_BATCH,
            ),
        ),
    ),
)
