"""Metrics of the Spark alerting job (fed by a StreamingQueryListener on the driver) and its express lane."""

from __future__ import annotations

from cryptopipe.observability.metrics.define import counter, gauge, histogram

ALERTING_BATCH_DURATION = histogram(
    "cryptopipe_alerting_batch_duration_seconds",
    "Micro-batch duration (progress triggerExecution), data and no-data batches.",
    (),
    "alerting",
)
ALERTING_BATCH_PHASE = histogram(
    "cryptopipe_alerting_batch_phase_seconds",
    "Micro-batch time by phase (progress durationMs: addBatch, latestOffset, walCommit, commitOffsets ...).",
    ("phase",),
    "alerting",
)
ALERTING_INPUT_RATE = gauge(
    "cryptopipe_alerting_input_rows_per_second",
    "Trades arriving per second, as of the last micro-batch.",
    (),
    "alerting",
)
ALERTING_PROCESSED_RATE = gauge(
    "cryptopipe_alerting_processed_rows_per_second",
    "Trades processed per second, as of the last micro-batch.",
    (),
    "alerting",
)
ALERTING_INPUT_ROWS = counter(
    "cryptopipe_alerting_input_rows",
    "Records read from the prices topic by the job.",
    (),
    "alerting",
)
ALERTING_INVALID_ROWS = counter(
    "cryptopipe_alerting_invalid_rows",
    "Records on the prices topic that are not trades; skipped.",
    (),
    "alerting",
)
ALERTING_ALERTS = counter(
    "cryptopipe_alerting_alerts",
    "Alerts published to the alerts topic (output rows), by rule and kind.",
    ("rule", "kind"),
    "alerting",
)
ALERTING_DROPPED_LATE = counter(
    "cryptopipe_alerting_rows_dropped_by_watermark",
    "Trades dropped as late: more than the allowed delay behind the newest trade time already seen for "
    "their symbol, in arrival (Kafka offset) order.",
    (),
    "alerting",
)
ALERTING_WATERMARK_DELAY = gauge(
    "cryptopipe_alerting_watermark_delay_seconds",
    "Wall clock minus the job's event-time watermark (the newest trade time seen, minus "
    "ALERTING_WATERMARK_DELAY_MS) at the end of the last micro-batch.",
    (),
    "alerting",
)
ALERTING_READ_OFFSET = gauge(
    "cryptopipe_alerting_read_offset",
    "Next offset of each prices partition the alerting query reads: the end offset of its last "
    "micro-batch (what a restart resumes from).",
    ("topic", "partition"),
    "alerting",
)
ALERTING_LAG = gauge(
    "cryptopipe_alerting_lag",
    "Records of each prices partition the alerting query has not read yet: the partition's high "
    "watermark (asked of the broker every second) minus cryptopipe_alerting_read_offset. Exported "
    "from the query's first micro-batch on.",
    ("topic", "partition"),
    "alerting",
)
ALERTING_PROGRESS_HISTORY = gauge(
    "cryptopipe_alerting_progress_history",
    "Micro-batch progress events the alerting job keeps in memory (plain Python copies, the newest; "
    "bounded by ALERTING_PROGRESS_HISTORY).",
    (),
    "alerting",
)
ALERTING_STATE_ROWS = gauge(
    "cryptopipe_alerting_state_rows",
    "Rows held in the job's state stores (open windows).",
    (),
    "alerting",
)
ALERTING_BATCHES = counter(
    "cryptopipe_alerting_batches",
    "Micro-batches run, by whether they carried new data.",
    ("data",),
    "alerting",
)
ALERTING_QUERY_RESTARTS = counter(
    "cryptopipe_alerting_query_restarts",
    "Times the streaming query failed and restarted from its checkpoint.",
    (),
    "alerting",
)
ALERTING_PUBLISH_LATENCY = histogram(
    "cryptopipe_alerting_publish_latency_seconds",
    "Alert acknowledged by Kafka minus receive time of the trade that let the watermark pass the window "
    "end (final) or that crossed the threshold (early).",
    ("kind",),
    "alerting",
)
ALERTING_EXPRESS_ALERTS = counter(
    "cryptopipe_alerting_express_alerts",
    "Alerts the express lane published to the alerts topic the moment their trade arrived, by rule and "
    "kind (the Spark query publishes each again a micro-batch later; the alerts consumer keeps the first).",
    ("rule", "kind"),
    "alerting",
)
ALERTING_EXPRESS_PUBLISH_LATENCY = histogram(
    "cryptopipe_alerting_express_publish_latency_seconds",
    "Express-lane alert acknowledged by Kafka minus receive time of the trade that decided it.",
    ("kind",),
    "alerting",
)
ALERT_LATENCY = histogram(
    "cryptopipe_alert_latency_seconds",
    "Alert written to Redis minus receive time of the trade that closed the window (its symbol's first "
    "trade at or past window end + allowed delay; final) or that crossed the threshold (early). "
    "Observed by the alerts consumer.",
    ("kind",),
    "alerting",
)
