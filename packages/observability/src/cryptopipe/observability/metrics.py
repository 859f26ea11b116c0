"""The metrics catalogue: every metric any cryptopipe service exports, defined once.

Services import the metric objects they update from here, so a name can never drift between
the code, docs/metrics.md (generated from :func:`catalogue`, kept in step by a test), the
Prometheus rules and the Grafana dashboards. All names start with ``cryptopipe_``; durations
are in seconds, as Prometheus convention asks, even though messages carry microseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase


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
    name: str, meaning: str, labels: tuple[str, ...], component: str,
    buckets: tuple[float, ...] = LATENCY_BUCKETS,
) -> Histogram:
    _note(name, "histogram", labels, component, meaning)
    return Histogram(name, meaning, labels, buckets=buckets, registry=REGISTRY)


def catalogue() -> list[CatalogueEntry]:
    """Every metric defined here, in definition order (names without the _total suffix)."""
    return list(_ENTRIES)


# --- every service -------------------------------------------------------------------------
BUILD_INFO = _gauge(
    "cryptopipe_build_info", "Always 1; labels say which component and version runs.",
    ("component", "version"), "all",
)
ERRORS = _counter(
    "cryptopipe_errors", "Errors by component and reason (each also logged).", ("component", "reason"), "all",
)
DEAD_LETTERS = _counter(
    "cryptopipe_dead_letters",
    "Messages that could not be processed and were sent to the dead-letter topic, by reason.",
    ("component", "reason"), "all",
)

# --- ingest --------------------------------------------------------------------------------
TRADES_RECEIVED = _counter(
    "cryptopipe_ingest_trades_received", "Trades parsed from the exchange stream (live, not backfilled).",
    ("symbol",), "ingest",
)
TRADES_PUBLISHED = _counter(
    "cryptopipe_ingest_trades_published", "Trades the broker acknowledged (delivery report OK), incl. backfill.",
    ("symbol",), "ingest",
)
TRADES_LOST = _counter(
    "cryptopipe_ingest_trades_lost",
    "Trades that will never reach Kafka: buffer bound hit or delivery failed for good.", ("reason",), "ingest",
)
PRODUCER_BUFFERED = _gauge(
    "cryptopipe_ingest_producer_buffered", "Trades waiting for a broker acknowledgement.", (), "ingest",
)
CONNECTIONS = _gauge(
    "cryptopipe_ingest_connections", "Open WebSocket connections to the exchange.", (), "ingest",
)
RECONNECTS = _counter(
    "cryptopipe_ingest_reconnects", "WebSocket reconnects, by reason.", ("reason",), "ingest",
)
GAPS = _counter(
    "cryptopipe_ingest_gaps", "Trade-id gaps detected in the stream.", ("symbol",), "ingest",
)
BACKFILLED = _counter(
    "cryptopipe_ingest_trades_backfilled", "Trades recovered from the REST backfill after a gap.",
    ("symbol",), "ingest",
)
UNFILLED = _counter(
    "cryptopipe_ingest_trades_unfilled", "Trade ids inside a gap that the backfill could not recover.",
    ("symbol",), "ingest",
)
NETWORK_LATENCY = _histogram(
    "cryptopipe_network_latency_seconds",
    "Receive time minus exchange trade time (raw, not corrected for clock skew).", ("symbol",), "ingest",
)
INGEST_PROCESSING = _histogram(
    "cryptopipe_ingest_processing_seconds", "Time from frame received to record handed to the producer.",
    (), "ingest",
)

# --- consumers (prices and alerts share one loop) ------------------------------------------
CONSUMED = _counter(
    "cryptopipe_consumer_messages", "Records consumed and written to Redis.", ("consumer", "topic"), "consumer",
)
CONSUMER_LAG = _gauge(
    "cryptopipe_consumer_lag",
    "Records behind the partition end (end = max of broker high watermark and highest offset fetched + 1).",
    ("consumer", "topic", "partition"), "consumer",
)
CONSUMER_BATCH = _histogram(
    "cryptopipe_consumer_batch_seconds", "Processing time of one consumed batch (decode + Redis write).",
    ("consumer",), "consumer",
)
CONSUMER_BATCH_SIZE = _histogram(
    "cryptopipe_consumer_batch_size", "Records per consumed batch.", ("consumer",), "consumer",
    buckets=BATCH_SIZE_BUCKETS,
)
CONSUMER_THROUGHPUT = _gauge(
    "cryptopipe_consumer_throughput_msgs_per_second", "Records per second over the last few seconds.",
    ("consumer",), "consumer",
)
PRICES_WRITTEN = _counter(
    "cryptopipe_prices_written", "Trades written to Redis history; latest price moved forward if newer.",
    ("symbol",), "consumer",
)
STALE_PRICES = _counter(
    "cryptopipe_prices_stale", "Trades older than the stored latest price (replays, duplicates): not applied.",
    ("symbol",), "consumer",
)
SYSTEM_LATENCY = _histogram(
    "cryptopipe_system_latency_seconds", "Redis written minus local receive time (our own pipeline's share).",
    ("symbol",), "consumer",
)
E2E_LATENCY = _histogram(
    "cryptopipe_e2e_latency_seconds", "Redis written minus exchange trade time (raw, not skew-corrected).",
    ("symbol",), "consumer",
)
SYSTEM_SHARE = _gauge(
    "cryptopipe_system_latency_share", "System latency / end-to-end latency, mean over the last batch.",
    ("symbol",), "consumer",
)
REDIS_WRITE = _histogram(
    "cryptopipe_redis_write_seconds", "Duration of one pipelined Redis write of a batch.", ("consumer",),
    "consumer",
)
