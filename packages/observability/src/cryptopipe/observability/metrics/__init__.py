"""The metrics catalogue: every metric any cryptopipe service exports, defined once.

Services import the metric objects they update from here, so a name can never drift between
the code, docs/metrics.md (generated from :func:`catalogue`, kept in step by a test), the
Prometheus rules and the Grafana dashboards. All names start with ``cryptopipe_``; durations
are in seconds, as Prometheus convention asks, even though messages carry microseconds.

One module per area defines its metrics (``common``, ``ingest``, ``consumer``, ``skew``,
``infrastructure``, ``alerting``, ``books``, ``replay``); this package re-exports them all, so callers write
``from cryptopipe.observability import metrics as m`` and ``m.TRADES_RECEIVED``. A ``symbol``
label is set through :func:`symbol_label`, which bounds the series per process (``symbols``).
"""

from __future__ import annotations

from cryptopipe.observability.metrics.define import BATCH_SIZE_BUCKETS as BATCH_SIZE_BUCKETS
from cryptopipe.observability.metrics.define import LATENCY_BUCKETS as LATENCY_BUCKETS
from cryptopipe.observability.metrics.define import CatalogueEntry as CatalogueEntry
from cryptopipe.observability.metrics.define import catalogue as catalogue
from cryptopipe.observability.metrics.observe import HistogramBatch as HistogramBatch
from cryptopipe.observability.metrics.observe import observe_many as observe_many
from cryptopipe.observability.metrics.observe import prime as prime
from cryptopipe.observability.metrics.symbols import OTHER as OTHER
from cryptopipe.observability.metrics.symbols import SYMBOL_LABELS as SYMBOL_LABELS
from cryptopipe.observability.metrics.symbols import SymbolLabels as SymbolLabels
from cryptopipe.observability.metrics.symbols import symbol_label as symbol_label
from cryptopipe.observability.metrics.symbols import symbol_labels as symbol_labels

# isort: off
# The areas in catalogue order, which is the order they are imported in (each notes its metrics
# as it defines them): docs/metrics.md and the generated rules list the metrics in this order.
from cryptopipe.observability.metrics.common import (
    BUILD_INFO as BUILD_INFO,
    ERRORS as ERRORS,
    DEAD_LETTERS as DEAD_LETTERS,
    METRICS_SYMBOLS as METRICS_SYMBOLS,
)
from cryptopipe.observability.metrics.ingest import (
    TRADES_RECEIVED as TRADES_RECEIVED,
    TRADES_PUBLISHED as TRADES_PUBLISHED,
    TRADES_LOST as TRADES_LOST,
    PRODUCER_BUFFERED as PRODUCER_BUFFERED,
    PRODUCER_LATENCY as PRODUCER_LATENCY,
    CONNECTIONS as CONNECTIONS,
    RECONNECTS as RECONNECTS,
    GAPS as GAPS,
    BACKFILLED as BACKFILLED,
    UNFILLED as UNFILLED,
    DUPLICATES as DUPLICATES,
    RESUMED_SYMBOLS as RESUMED_SYMBOLS,
    RESUME_SECONDS as RESUME_SECONDS,
    NETWORK_LATENCY as NETWORK_LATENCY,
    INGEST_PROCESSING as INGEST_PROCESSING,
)
from cryptopipe.observability.metrics.consumer import (
    CONSUMED as CONSUMED,
    CONSUMER_LAG as CONSUMER_LAG,
    CONSUMER_ASSIGNED as CONSUMER_ASSIGNED,
    CONSUMER_BATCH as CONSUMER_BATCH,
    CONSUMER_BATCH_SIZE as CONSUMER_BATCH_SIZE,
    CONSUMER_THROUGHPUT as CONSUMER_THROUGHPUT,
    CONSUMER_SECONDS_SINCE_PROGRESS as CONSUMER_SECONDS_SINCE_PROGRESS,
    CONSUMER_STALLS as CONSUMER_STALLS,
    CONSUMER_STALL_RECOVERIES as CONSUMER_STALL_RECOVERIES,
    CONSUMER_REDELIVERED as CONSUMER_REDELIVERED,
    PRICES_WRITTEN as PRICES_WRITTEN,
    STALE_PRICES as STALE_PRICES,
    SYSTEM_LATENCY as SYSTEM_LATENCY,
    E2E_LATENCY as E2E_LATENCY,
    SYSTEM_SHARE as SYSTEM_SHARE,
    REDIS_WRITE as REDIS_WRITE,
)
from cryptopipe.observability.metrics.skew import (
    CLOCK_OFFSET as CLOCK_OFFSET,
    CLOCK_OFFSET_UNCERTAINTY as CLOCK_OFFSET_UNCERTAINTY,
    CLOCK_RTT as CLOCK_RTT,
    CLOCK_ESTIMATE_AGE as CLOCK_ESTIMATE_AGE,
    CLOCK_ESTIMATE_STALE as CLOCK_ESTIMATE_STALE,
    API_RESPONSE as API_RESPONSE,
    NETWORK_LATENCY_CORRECTED as NETWORK_LATENCY_CORRECTED,
)
from cryptopipe.observability.metrics.infrastructure import (
    PROCESS_CPU as PROCESS_CPU,
    PROCESS_MEMORY as PROCESS_MEMORY,
    PROCESS_DISK_READ as PROCESS_DISK_READ,
    PROCESS_DISK_WRITE as PROCESS_DISK_WRITE,
    PROCESS_NETWORK_RECEIVE as PROCESS_NETWORK_RECEIVE,
    PROCESS_NETWORK_TRANSMIT as PROCESS_NETWORK_TRANSMIT,
    PROCESS_COUNT as PROCESS_COUNT,
)
from cryptopipe.observability.metrics.alerting import (
    ALERTING_BATCH_DURATION as ALERTING_BATCH_DURATION,
    ALERTING_BATCH_PHASE as ALERTING_BATCH_PHASE,
    ALERTING_INPUT_RATE as ALERTING_INPUT_RATE,
    ALERTING_PROCESSED_RATE as ALERTING_PROCESSED_RATE,
    ALERTING_INPUT_ROWS as ALERTING_INPUT_ROWS,
    ALERTING_INVALID_ROWS as ALERTING_INVALID_ROWS,
    ALERTING_ALERTS as ALERTING_ALERTS,
    ALERTING_DROPPED_LATE as ALERTING_DROPPED_LATE,
    ALERTING_WATERMARK_DELAY as ALERTING_WATERMARK_DELAY,
    ALERTING_READ_OFFSET as ALERTING_READ_OFFSET,
    ALERTING_LAG as ALERTING_LAG,
    ALERTING_PROGRESS_HISTORY as ALERTING_PROGRESS_HISTORY,
    ALERTING_STATE_ROWS as ALERTING_STATE_ROWS,
    ALERTING_BATCHES as ALERTING_BATCHES,
    ALERTING_QUERY_RESTARTS as ALERTING_QUERY_RESTARTS,
    ALERTING_PUBLISH_LATENCY as ALERTING_PUBLISH_LATENCY,
    ALERTING_EXPRESS_ALERTS as ALERTING_EXPRESS_ALERTS,
    ALERTING_EXPRESS_PUBLISH_LATENCY as ALERTING_EXPRESS_PUBLISH_LATENCY,
    ALERT_LATENCY as ALERT_LATENCY,
)
from cryptopipe.observability.metrics.books import (
    BOOK_RECORDS as BOOK_RECORDS,
    BOOK_BREAKS as BOOK_BREAKS,
    BOOK_RESETS as BOOK_RESETS,
    BOOK_WARM_STARTS as BOOK_WARM_STARTS,
    BOOK_WRITES as BOOK_WRITES,
    BOOK_STALENESS as BOOK_STALENESS,
    BOOK_LATENCY as BOOK_LATENCY,
    BOOK_E2E_LATENCY as BOOK_E2E_LATENCY,
)
from cryptopipe.observability.metrics.book_sync import (
    BOOK_EVENTS as BOOK_EVENTS,
    BOOK_EVENTS_BUFFERED as BOOK_EVENTS_BUFFERED,
    BOOK_RESYNCS as BOOK_RESYNCS,
    BOOK_GAPS as BOOK_GAPS,
    BOOKS as BOOKS,
    SNAPSHOT_REQUESTS as SNAPSHOT_REQUESTS,
    SNAPSHOT_QUEUE as SNAPSHOT_QUEUE,
    SNAPSHOT_WAITS as SNAPSHOT_WAITS,
    SNAPSHOT_WAIT_SECONDS as SNAPSHOT_WAIT_SECONDS,
    REST_WEIGHT_USED as REST_WEIGHT_USED,
    BOOK_RECORDS_PUBLISHED as BOOK_RECORDS_PUBLISHED,
    BOOK_RECORDS_LOST as BOOK_RECORDS_LOST,
    BOOK_TICKER_CHECKS as BOOK_TICKER_CHECKS,
)
from cryptopipe.observability.metrics.skew_uncertainty import (
    CLOCK_OFFSET_INTERVAL as CLOCK_OFFSET_INTERVAL,
    CLOCK_UNCERTAINTY_COMPONENT as CLOCK_UNCERTAINTY_COMPONENT,
    CLOCK_DRIFT as CLOCK_DRIFT,
    CLOCK_SAMPLES_IN_FIT as CLOCK_SAMPLES_IN_FIT,
    CLOCK_STEPS as CLOCK_STEPS,
    CLOCK_LAST_STEP as CLOCK_LAST_STEP,
    CLOCK_OUTLIER_INTERVALS as CLOCK_OUTLIER_INTERVALS,
    CLOCK_REFERENCE_DIFFERENCE as CLOCK_REFERENCE_DIFFERENCE,
    CLOCK_REFERENCES_DISAGREE as CLOCK_REFERENCES_DISAGREE,
    CLOCK_DISAGREEMENTS as CLOCK_DISAGREEMENTS,
)
from cryptopipe.observability.metrics.replay import (
    REPLAY_HISTORY_TRADES as REPLAY_HISTORY_TRADES,
    REPLAY_HISTORY_BYTES as REPLAY_HISTORY_BYTES,
    REPLAY_HISTORY_TRIMMED as REPLAY_HISTORY_TRIMMED,
)
# isort: on
