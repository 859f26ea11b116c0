"""The metrics catalogue: every metric any cryptopipe service exports, defined once.

Services import the metric objects they update from here, so a name can never drift between
the code, docs/metrics.md (generated from :func:`catalogue`, kept in step by a test), the
Prometheus rules and the Grafana dashboards. All names start with ``cryptopipe_``; durations
are in seconds, as Prometheus convention asks, even though messages carry microseconds.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter as _Tally
from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client import REGISTRY, Counter, Gauge, Histogram


def _exponential(start: float, factor: float, stop: float) -> tuple[float, ...]:
    buckets = [start]
    while buckets[-1] * factor < stop:
        buckets.append(round(buckets[-1] * factor, 9))
    buckets.append(stop)
    return tuple(buckets)


#: 50 µs .. 60 s, ~1.5x apart: fine enough that p95/p99 interpolate to within a few percent.
LATENCY_BUCKETS = _exponential(50e-6, 1.5, 60.0)
#: Records per consumer batch.
BATCH_SIZE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)


@dataclass(frozen=True, slots=True)
class CatalogueEntry:
    name: str
    type: str
    labels: tuple[str, ...]
    component: str
    meaning: str


_ENTRIES: list[CatalogueEntry] = []


def _note(name: str, kind: str, labels: tuple[str, ...], component: str, meaning: str) -> None:
    _ENTRIES.append(CatalogueEntry(name, kind, labels, component, meaning))


def _counter(name: str, meaning: str, labels: tuple[str, ...], component: str) -> Counter:
    _note(name, "counter", labels, component, meaning)
    return Counter(name, meaning, labels, registry=REGISTRY)


def _gauge(name: str, meaning: str, labels: tuple[str, ...], component: str) -> Gauge:
    _note(name, "gauge", labels, component, meaning)
    return Gauge(name, meaning, labels, registry=REGISTRY)


def _histogram(
    name: str,
    meaning: str,
    labels: tuple[str, ...],
    component: str,
    buckets: tuple[float, ...] = LATENCY_BUCKETS,
) -> Histogram:
    _note(name, "histogram", labels, component, meaning)
    return Histogram(name, meaning, labels, buckets=buckets, registry=REGISTRY)


def prime(metric: Counter | Gauge | Histogram, *label_sets: dict[str, str]) -> None:
    """Create label sets up front so their series exist (at 0) before the first event.

    A labelled metric exports nothing until a label set is used; rare-event counters (gaps,
    losses, dead letters) would read "no data" instead of 0 in panels, rules and rate().
    """
    for labels in label_sets:
        metric.labels(**labels)


def observe_many(histogram: Histogram, values: Iterable[float]) -> None:
    """``histogram.observe(v)`` for each of ``values``, at one lock per bucket touched.

    ``Histogram.observe`` walks the bucket bounds and takes two locks per value, which costs more
    than everything else a hot path does with a trade. Here the bucket of each value is found
    by bisection and each touched bucket is incremented once, so a batch of trades costs a few
    increments. ``histogram`` is a child (labels already applied). The exported series are the
    same as with ``observe``: a value lands in the first bucket whose bound is >= it.
    """
    bounds = histogram._upper_bounds  # prometheus_client's own fields; pinned by the test of this
    total = 0.0
    tally: _Tally[int] = _Tally()
    for value in values:
        total += value
        tally[bisect_left(bounds, value)] += 1
    if not tally:
        return
    histogram._raise_if_not_observable()
    histogram._sum.inc(total)
    for index, count in tally.items():
        histogram._buckets[index].inc(count)


class HistogramBatch:
    """Observations of one histogram child, kept in a list and observed together by :meth:`flush`.

    For a path that sees one value at a time at thousands per second (ingest, per trade): the
    owner calls :meth:`flush` on a timer and when it stops, so the series lag by that period.
    """

    __slots__ = ("child", "values")

    def __init__(self, child: Histogram) -> None:
        self.child = child
        self.values: list[float] = []

    def add(self, value: float) -> None:
        self.values.append(value)

    def flush(self) -> None:
        if self.values:
            values, self.values = self.values, []
            observe_many(self.child, values)


def catalogue() -> list[CatalogueEntry]:
    """Every metric defined here, in definition order (names without the _total suffix)."""
    return list(_ENTRIES)


# --- every service -------------------------------------------------------------------------
BUILD_INFO = _gauge(
    "cryptopipe_build_info",
    "Always 1; labels say which component and version runs.",
    ("component", "version"),
    "all",
)
ERRORS = _counter(
    "cryptopipe_errors",
    "Errors by component and reason (each also logged).",
    ("component", "reason"),
    "all",
)
DEAD_LETTERS = _counter(
    "cryptopipe_dead_letters",
    "Messages that could not be processed and were sent to the dead-letter topic, by reason.",
    ("component", "reason"),
    "all",
)

# --- ingest --------------------------------------------------------------------------------
TRADES_RECEIVED = _counter(
    "cryptopipe_ingest_trades_received",
    "Trades parsed from the exchange stream (live, not backfilled).",
    ("symbol",),
    "ingest",
)
TRADES_PUBLISHED = _counter(
    "cryptopipe_ingest_trades_published",
    "Trades the broker acknowledged (delivery report OK), incl. backfill.",
    ("symbol",),
    "ingest",
)
TRADES_LOST = _counter(
    "cryptopipe_ingest_trades_lost",
    "Trades that will never reach Kafka: buffer bound hit or delivery failed for good.",
    ("reason",),
    "ingest",
)
PRODUCER_BUFFERED = _gauge(
    "cryptopipe_ingest_producer_buffered",
    "Trades waiting for a broker acknowledgement.",
    (),
    "ingest",
)
PRODUCER_LATENCY = _gauge(
    "cryptopipe_kafka_producer_latency_seconds",
    "The trade producer's own latency, per broker, from librdkafka's statistics (one window each "
    "INGEST_STATISTICS_INTERVAL_MS): stage=queue is produce() until the record is in a request "
    "(the linger, batching), stage=outbuf a request waiting to be sent, stage=rtt a produce "
    "request until the broker's answer (the log append with acks=all); quantile p50, p99, max.",
    ("broker", "stage", "quantile"),
    "ingest",
)
CONNECTIONS = _gauge(
    "cryptopipe_ingest_connections",
    "Open WebSocket connections to the exchange.",
    (),
    "ingest",
)
RECONNECTS = _counter(
    "cryptopipe_ingest_reconnects",
    "WebSocket reconnects, by reason.",
    ("reason",),
    "ingest",
)
GAPS = _counter(
    "cryptopipe_ingest_gaps",
    "Trade-id gaps detected in the stream.",
    ("symbol",),
    "ingest",
)
BACKFILLED = _counter(
    "cryptopipe_ingest_trades_backfilled",
    "Trades recovered from the REST backfill after a gap.",
    ("symbol",),
    "ingest",
)
UNFILLED = _counter(
    "cryptopipe_ingest_trades_unfilled",
    "Trade ids inside a gap that the backfill could not recover.",
    ("symbol",),
    "ingest",
)
DUPLICATES = _counter(
    "cryptopipe_ingest_trades_duplicate",
    "Trades received again (id at or below the last published one, e.g. after a reconnect): dropped.",
    ("symbol",),
    "ingest",
)
NETWORK_LATENCY = _histogram(
    "cryptopipe_network_latency_seconds",
    "Receive time minus exchange trade time (raw, not corrected for clock skew).",
    ("symbol",),
    "ingest",
)
INGEST_PROCESSING = _histogram(
    "cryptopipe_ingest_processing_seconds",
    "Time from frame received to record handed to the producer.",
    (),
    "ingest",
)

# --- consumers (prices and alerts share one loop) ------------------------------------------
CONSUMED = _counter(
    "cryptopipe_consumer_messages",
    "Records consumed and written to Redis.",
    ("consumer", "topic"),
    "consumer",
)
CONSUMER_LAG = _gauge(
    "cryptopipe_consumer_lag",
    "Records behind the partition end (end = max of broker high watermark and highest offset fetched + 1).",
    ("consumer", "topic", "partition"),
    "consumer",
)
CONSUMER_ASSIGNED = _gauge(
    "cryptopipe_consumer_assigned_partitions",
    "Partitions currently assigned to this consumer (0 until it joined).",
    ("consumer", "topic"),
    "consumer",
)
CONSUMER_BATCH = _histogram(
    "cryptopipe_consumer_batch_seconds",
    "Processing time of one consumed batch (decode + Redis write).",
    ("consumer",),
    "consumer",
)
CONSUMER_BATCH_SIZE = _histogram(
    "cryptopipe_consumer_batch_size",
    "Records per consumed batch.",
    ("consumer",),
    "consumer",
    buckets=BATCH_SIZE_BUCKETS,
)
CONSUMER_THROUGHPUT = _gauge(
    "cryptopipe_consumer_throughput_msgs_per_second",
    "Records per second over the last few seconds.",
    ("consumer",),
    "consumer",
)
CONSUMER_SECONDS_SINCE_PROGRESS = _gauge(
    "cryptopipe_consumer_seconds_since_progress",
    "Seconds records have been waiting (lag > 0) without any being written to Redis, worst partition; "
    "0 while caught up (idle is not a stall). Computed when scraped, so it grows even if the loop hangs.",
    ("consumer",),
    "consumer",
)
CONSUMER_STALLS = _counter(
    "cryptopipe_consumer_stalls",
    "Stalls detected: records waiting and none written for the stall timeout (default 5 s).",
    ("consumer",),
    "consumer",
)
CONSUMER_STALL_RECOVERIES = _counter(
    "cryptopipe_consumer_stall_recoveries",
    "Recovery actions of a stalled consumer: seek (stalled partitions back to the last written offset), "
    "recreate (commit, close and recreate the Kafka consumer, then resubscribe).",
    ("consumer", "action"),
    "consumer",
)
PRICES_WRITTEN = _counter(
    "cryptopipe_prices_written",
    "Trades written to Redis history; latest price moved forward if newer.",
    ("symbol",),
    "consumer",
)
STALE_PRICES = _counter(
    "cryptopipe_prices_stale",
    "Trades older than the stored latest price (replays, duplicates): not applied.",
    ("symbol",),
    "consumer",
)
SYSTEM_LATENCY = _histogram(
    "cryptopipe_system_latency_seconds",
    "Redis written minus local receive time (our own pipeline's share).",
    ("symbol",),
    "consumer",
)
E2E_LATENCY = _histogram(
    "cryptopipe_e2e_latency_seconds",
    "Redis written minus exchange trade time (raw, not skew-corrected).",
    ("symbol",),
    "consumer",
)
SYSTEM_SHARE = _gauge(
    "cryptopipe_system_latency_share",
    "System latency / end-to-end latency, mean over the last batch.",
    ("symbol",),
    "consumer",
)
REDIS_WRITE = _histogram(
    "cryptopipe_redis_write_seconds",
    "Duration of one pipelined Redis write of a batch.",
    ("consumer",),
    "consumer",
)

# --- skew (clock offset against Binance / NTP; sign: reference clock minus local clock) ----
CLOCK_OFFSET = _gauge(
    "cryptopipe_clock_offset_seconds",
    "Estimated reference clock minus local clock (NTP's sign), median of the recent intervals.",
    ("reference",),
    "skew",
)
CLOCK_OFFSET_UNCERTAINTY = _gauge(
    "cryptopipe_clock_offset_uncertainty_seconds",
    "Offset error bound for a symmetric path: half the best round trip plus half the stamp resolution.",
    ("reference",),
    "skew",
)
CLOCK_RTT = _gauge(
    "cryptopipe_clock_rtt_seconds",
    "Round trip of the sample the offset came from (the interval's shortest).",
    ("reference",),
    "skew",
)
CLOCK_ESTIMATE_AGE = _gauge(
    "cryptopipe_clock_estimate_age_seconds",
    "Seconds since the last good estimate (since start while there is none).",
    ("reference",),
    "skew",
)
CLOCK_ESTIMATE_STALE = _gauge(
    "cryptopipe_clock_estimate_stale",
    "1 while the last attempt failed or the estimate is too old (the last good one stays in use), else 0.",
    ("reference",),
    "skew",
)
API_RESPONSE = _histogram(
    "cryptopipe_api_response_seconds",
    "Exchange REST response time (request sent to body read), by endpoint.",
    ("endpoint",),
    "skew",
)
NETWORK_LATENCY_CORRECTED = _histogram(
    "cryptopipe_network_latency_corrected_seconds",
    "Receive time minus exchange trade time plus the estimated clock offset (skew-corrected).",
    ("symbol",),
    "ingest",
)

# --- infrastructure: per-component resources (observability.process; compose: cAdvisor) ------
# Embedded mode samples the component's processes with psutil (root + all descendants, so the
# Spark driver includes its JVM); compose reads the same quantities from cAdvisor. The recording
# rules component:*:* (compose/prometheus/rules/recording.yml) give one series per meaning from
# either source, preferring cAdvisor where both exist.
PROCESS_CPU = _counter(
    "cryptopipe_process_cpu_seconds",
    "CPU time (user + system) of the component's processes incl. descendants; rate() = cores used. "
    "Compose: container_cpu_usage_seconds_total.",
    ("component",),
    "infrastructure",
)
PROCESS_MEMORY = _gauge(
    "cryptopipe_process_resident_memory_bytes",
    "Resident set size summed over the component's processes incl. descendants (shared pages count "
    "once per process). Compose: container_memory_rss.",
    ("component",),
    "infrastructure",
)
PROCESS_DISK_READ = _counter(
    "cryptopipe_process_disk_read_bytes",
    "Bytes the component's processes caused to be read from storage (page-cache hits excluded). "
    "Compose: container_fs_reads_bytes_total.",
    ("component",),
    "infrastructure",
)
PROCESS_DISK_WRITE = _counter(
    "cryptopipe_process_disk_write_bytes",
    "Bytes the component's processes caused to be written to storage (counted when pages are dirtied). "
    "Compose: container_fs_writes_bytes_total.",
    ("component",),
    "infrastructure",
)
PROCESS_NETWORK_RECEIVE = _counter(
    "cryptopipe_process_network_receive_bytes",
    "Bytes received. Embedded mode, Linux: TCP payload bytes received on the component's sockets "
    "(sock_diag tcp_info; loopback included; a socket's last interval is lost when it closes between "
    'samples); component="host": all interfaces of the host incl. loopback (wire bytes). '
    "Compose: container_network_receive_bytes_total.",
    ("component",),
    "infrastructure",
)
PROCESS_NETWORK_TRANSMIT = _counter(
    "cryptopipe_process_network_transmit_bytes",
    "Bytes sent. Embedded mode, Linux: TCP payload bytes sent and acknowledged on the component's "
    'sockets; component="host": all interfaces of the host incl. loopback. '
    "Compose: container_network_transmit_bytes_total.",
    ("component",),
    "infrastructure",
)
PROCESS_COUNT = _gauge(
    "cryptopipe_process_count",
    "Live processes counted for the component (root + descendants); 0 once the root has exited.",
    ("component",),
    "infrastructure",
)

# --- alerting (Spark job; fed by a StreamingQueryListener on the driver) ------------------------
ALERTING_BATCH_DURATION = _histogram(
    "cryptopipe_alerting_batch_duration_seconds",
    "Micro-batch duration (progress triggerExecution), data and no-data batches.",
    (),
    "alerting",
)
ALERTING_BATCH_PHASE = _histogram(
    "cryptopipe_alerting_batch_phase_seconds",
    "Micro-batch time by phase (progress durationMs: addBatch, latestOffset, walCommit, commitOffsets ...).",
    ("phase",),
    "alerting",
)
ALERTING_INPUT_RATE = _gauge(
    "cryptopipe_alerting_input_rows_per_second",
    "Trades arriving per second, as of the last micro-batch.",
    (),
    "alerting",
)
ALERTING_PROCESSED_RATE = _gauge(
    "cryptopipe_alerting_processed_rows_per_second",
    "Trades processed per second, as of the last micro-batch.",
    (),
    "alerting",
)
ALERTING_INPUT_ROWS = _counter(
    "cryptopipe_alerting_input_rows",
    "Records read from the prices topic by the job.",
    (),
    "alerting",
)
ALERTING_INVALID_ROWS = _counter(
    "cryptopipe_alerting_invalid_rows",
    "Records on the prices topic that are not trades; skipped.",
    (),
    "alerting",
)
ALERTING_ALERTS = _counter(
    "cryptopipe_alerting_alerts",
    "Alerts published to the alerts topic (output rows), by rule and kind.",
    ("rule", "kind"),
    "alerting",
)
ALERTING_DROPPED_LATE = _counter(
    "cryptopipe_alerting_rows_dropped_by_watermark",
    "Trades dropped as late: more than the allowed delay behind the newest trade time already seen for "
    "their symbol, in arrival (Kafka offset) order.",
    (),
    "alerting",
)
ALERTING_WATERMARK_DELAY = _gauge(
    "cryptopipe_alerting_watermark_delay_seconds",
    "Wall clock minus the job's event-time watermark (the newest trade time seen, minus "
    "ALERTING_WATERMARK_DELAY_MS) at the end of the last micro-batch.",
    (),
    "alerting",
)
ALERTING_READ_OFFSET = _gauge(
    "cryptopipe_alerting_read_offset",
    "Next offset of each prices partition the alerting query reads: the end offset of its last "
    "micro-batch (what a restart resumes from).",
    ("topic", "partition"),
    "alerting",
)
ALERTING_LAG = _gauge(
    "cryptopipe_alerting_lag",
    "Records of each prices partition the alerting query has not read yet: the partition's high "
    "watermark (asked of the broker every second) minus cryptopipe_alerting_read_offset. Exported "
    "from the query's first micro-batch on.",
    ("topic", "partition"),
    "alerting",
)
ALERTING_STATE_ROWS = _gauge(
    "cryptopipe_alerting_state_rows",
    "Rows held in the job's state stores (open windows).",
    (),
    "alerting",
)
ALERTING_BATCHES = _counter(
    "cryptopipe_alerting_batches",
    "Micro-batches run, by whether they carried new data.",
    ("data",),
    "alerting",
)
ALERTING_QUERY_RESTARTS = _counter(
    "cryptopipe_alerting_query_restarts",
    "Times the streaming query failed and restarted from its checkpoint.",
    (),
    "alerting",
)
ALERTING_PUBLISH_LATENCY = _histogram(
    "cryptopipe_alerting_publish_latency_seconds",
    "Alert acknowledged by Kafka minus receive time of the trade that let the watermark pass the window "
    "end (final) or that crossed the threshold (early).",
    ("kind",),
    "alerting",
)
ALERTING_EXPRESS_ALERTS = _counter(
    "cryptopipe_alerting_express_alerts",
    "Alerts the express lane published to the alerts topic the moment their trade arrived, by rule and "
    "kind (the Spark query publishes each again a micro-batch later; the alerts consumer keeps the first).",
    ("rule", "kind"),
    "alerting",
)
ALERTING_EXPRESS_PUBLISH_LATENCY = _histogram(
    "cryptopipe_alerting_express_publish_latency_seconds",
    "Express-lane alert acknowledged by Kafka minus receive time of the trade that decided it.",
    ("kind",),
    "alerting",
)
ALERT_LATENCY = _histogram(
    "cryptopipe_alert_latency_seconds",
    "Alert written to Redis minus receive time of the trade that closed the window (its symbol's first "
    "trade at or past window end + allowed delay; final) or that crossed the threshold (early). "
    "Observed by the alerts consumer.",
    ("kind",),
    "alerting",
)
