"""Spark's query progress -> Prometheus (and the alert-latency trigger tracker)."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pyspark.sql.streaming.listener import StreamingQueryListener, StreamingQueryProgress

from cryptopipe.alerting.plan import OBSERVATION
from cryptopipe.observability import metrics as m

logger = logging.getLogger(__name__)

#: Progress phases worth a histogram series (durationMs keys).
PHASES = ("addBatch", "getBatch", "latestOffset", "queryPlanning", "walCommit", "commitOffsets")


def watermark_us(progress: Any) -> int | None:
    """The progress's event-time watermark in µs since the epoch (None before the first)."""
    event_time = progress["eventTime"] or {}
    text = event_time.get("watermark")
    if not text:
        return None
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return int(parsed.timestamp() * 1_000_000)


def read_offsets(progress: Any) -> dict[tuple[str, int], int]:
    """``(topic, partition) -> next offset`` the query reads, from its sources' end offsets.

    Spark's Kafka source writes ``{"<topic>": {"<partition>": offset}}``; the Python Data
    Source (:mod:`cryptopipe.alerting.kafka_source`) ``{"topic": ..., "partitions": {...}}``.
    Anything else (no offset yet, another source) reads as nothing.
    """
    found: dict[tuple[str, int], int] = {}
    for source in progress.sources or ():
        try:
            offset = json.loads(source.endOffset or "null")
        except (TypeError, ValueError):
            continue
        if not isinstance(offset, dict):
            continue
        if isinstance(offset.get("topic"), str) and isinstance(offset.get("partitions"), dict):
            offset = {offset["topic"]: offset["partitions"]}
        for topic, partitions in offset.items():
            if not isinstance(partitions, dict):
                continue
            for partition, position in partitions.items():
                if isinstance(position, int) and str(partition).isdigit():
                    found[(topic, int(partition))] = position
    return found


def detached(progress: Any) -> Any:
    """A StreamingQueryProgress rebuilt from its JSON: the same fields, no py4j proxy inside.

    pyspark builds a listener's progress from Spark's Java objects and keeps a proxy to each;
    a proxy and the members it caches refer to each other, so only Python's cyclic collector
    frees them (and only then does the JVM let go of the Java side). Kept for minutes, 2,000 such
    events made the driver grow ~20 KB a batch (2026-12-07). A copy from the JSON holds plain
    values; its observed metrics are a flat Row whose nested structs read as dicts. Anything
    else (a progress that is already plain) is returned as it is.
    """
    if isinstance(progress, StreamingQueryProgress):
        return StreamingQueryProgress.fromJson(json.loads(progress.json))
    return progress


class ProgressRecorder(StreamingQueryListener):
    """Updates the alerting metrics from each progress event of one query (by name).

    Also keeps the last ``keep`` progress events (for tests and the bench; ALERTING_PROGRESS_HISTORY)
    and hands each one to ``on_progress``. What it keeps is a copy in plain Python
    (:func:`detached`), not pyspark's event: that one holds a py4j proxy per part (the progress,
    each source and state operator, the sink), and each proxy keeps its Java object alive in the
    JVM until Python lets go of it. What every batch read is counted apart, in ``rows_read`` and
    ``batches``, for the whole run.
    """

    def __init__(
        self,
        query_name: str,
        on_progress: Callable[[Any], None] | None = None,
        keep: int = 2000,
        *,
        delay_ms: int = 0,
    ) -> None:
        super().__init__()
        self.query_name = query_name
        self.on_progress = on_progress
        self.delay_us = delay_ms * 1000
        #: Newest trade time any batch observed: the job's lateness runs ``delay_ms`` behind it.
        self.newest_trade_us: int | None = None
        self.progress: deque[Any] = deque(maxlen=keep)
        #: Rows every micro-batch of the run read, and the micro-batches (the history is bounded).
        self.rows_read = 0
        self.batches = 0
        #: ``(topic, partition) -> next offset`` after the last micro-batch (see :func:`read_offsets`).
        self.offsets: dict[tuple[str, int], int] = {}
        self._last_batch = -1
        self._changed = threading.Condition()

    def onQueryStarted(self, event: Any) -> None:
        if event.name == self.query_name:
            logger.info("query %s started (id %s, run %s)", event.name, event.id, event.runId)

    def onQueryProgress(self, event: Any) -> None:
        progress = event.progress
        if progress.name != self.query_name:
            return
        try:
            self._record(progress)
        except Exception:  # a listener must never take the listener bus down
            logger.exception("could not record progress of batch %s", progress.batchId)
            m.ERRORS.labels(component="alerting", reason="progress_listener").inc()

    def onQueryIdle(self, event: Any) -> None:
        pass

    def onQueryTerminated(self, event: Any) -> None:
        if event.exception:
            logger.warning("query %s terminated: %s", event.id, event.exception.splitlines()[0])

    def _record(self, progress: Any) -> None:
        batch_id = int(progress.batchId)
        new_batch = batch_id > self._last_batch
        durations = progress.durationMs or {}
        if new_batch and "triggerExecution" in durations:
            self._last_batch = batch_id
            rows = int(progress.numInputRows or 0)
            self.rows_read += rows
            self.batches += 1
            m.ALERTING_BATCH_DURATION.observe(durations["triggerExecution"] / 1000)
            for phase in PHASES:
                if phase in durations:
                    m.ALERTING_BATCH_PHASE.labels(phase=phase).observe(durations[phase] / 1000)
            m.ALERTING_BATCHES.labels(data="true" if rows else "false").inc()
            m.ALERTING_INPUT_ROWS.inc(rows)
            logger.debug(
                "batch %d: %d rows in %d ms (%s)",
                batch_id,
                rows,
                durations["triggerExecution"],
                ", ".join(f"{phase} {durations[phase]}" for phase in PHASES if phase in durations),
            )
            observed = progress.observedMetrics.get(OBSERVATION)
            if observed is not None and observed["invalid"]:
                m.ALERTING_INVALID_ROWS.inc(int(observed["invalid"]))
            newest = observed["max_trade_time_us"] if observed is not None else None
            if newest is not None and (self.newest_trade_us is None or int(newest) > self.newest_trade_us):
                self.newest_trade_us = int(newest)
            offsets = read_offsets(progress)
            for (topic, partition), position in offsets.items():
                m.ALERTING_READ_OFFSET.labels(topic=topic, partition=str(partition)).set(position)
            self.offsets = {**self.offsets, **offsets}
        m.ALERTING_INPUT_RATE.set(float(progress.inputRowsPerSecond or 0.0))
        m.ALERTING_PROCESSED_RATE.set(float(progress.processedRowsPerSecond or 0.0))
        m.ALERTING_STATE_ROWS.set(sum(int(op.numRowsTotal or 0) for op in progress.stateOperators))
        watermark = self.event_time_watermark_us(progress)
        if watermark is not None:
            m.ALERTING_WATERMARK_DELAY.set(max(0.0, time.time() - watermark / 1_000_000))
        with self._changed:
            if new_batch:
                self.progress.append(detached(progress))
                m.ALERTING_PROGRESS_HISTORY.set(len(self.progress))
            self._changed.notify_all()
        if new_batch and self.on_progress is not None:
            self.on_progress(progress)

    def event_time_watermark_us(self, progress: Any) -> int | None:
        """The event-time watermark: Spark's when the plan has one, else the job's own (the
        newest trade time seen, minus the delay: see :mod:`cryptopipe.alerting.plan`)."""
        spark = watermark_us(progress)
        if spark:  # Spark reports 1970-01-01 for a plan without withWatermark
            return spark
        return None if self.newest_trade_us is None else self.newest_trade_us - self.delay_us

    def wait_for_batch(self, batch_id: int, timeout: float) -> bool:
        """Block until the progress of ``batch_id`` (or a later batch) has been recorded."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._last_batch < batch_id:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
        return True

    @property
    def last_batch(self) -> int:
        return self._last_batch
