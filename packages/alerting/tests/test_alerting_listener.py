"""ProgressRecorder: Spark's query progress to metrics, without Spark (a progress is a record)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import REGISTRY, generate_latest

from cryptopipe.alerting.listener import ProgressRecorder, read_offsets
from cryptopipe.alerting.plan import OBSERVATION
from cryptopipe.alerting.settings import AlertingSettings
from cryptopipe.observability import metrics as m
from cryptopipe.observability.query import Scrape


@dataclass
class Progress:
    """The fields of a StreamingQueryProgress the recorder reads (attribute and item access)."""

    batchId: int
    observedMetrics: dict[str, Any]
    name: str = "q"
    durationMs: dict[str, int] = field(default_factory=lambda: {"triggerExecution": 40})
    numInputRows: int = 10
    inputRowsPerSecond: float = 100.0
    processedRowsPerSecond: float = 200.0
    stateOperators: list[Any] = field(default_factory=list)
    eventTime: dict[str, str] = field(default_factory=lambda: {"watermark": "1970-01-01T00:00:00.000Z"})
    sources: list[Any] = field(default_factory=list)

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)


@dataclass
class Source:
    endOffset: str | None


def _watermark_delay() -> float:
    return Scrape.from_text(generate_latest(REGISTRY).decode()).total(m.ALERTING_WATERMARK_DELAY)


def test_the_watermark_delay_follows_the_newest_trade_minus_the_allowed_lateness() -> None:
    recorder = ProgressRecorder("q", delay_ms=2000)
    now_us = time.time_ns() // 1000
    observed = {"rows": 10, "invalid": 0, "max_trade_time_us": now_us - 5_000_000}
    recorder._record(Progress(batchId=0, observedMetrics={OBSERVATION: observed}))
    assert recorder.newest_trade_us == now_us - 5_000_000
    delay = _watermark_delay()
    since = (time.time_ns() // 1000 - now_us) / 1e6  # taken after the read: an upper bound
    assert 7.0 <= delay <= 7.0 + since  # 5 s behind, plus 2 s of allowed lateness
    # An older batch maximum (a late trade's batch) does not move the watermark back.
    older = {**observed, "max_trade_time_us": now_us - 60_000_000}
    recorder._record(Progress(batchId=1, observedMetrics={OBSERVATION: older}))
    assert recorder.newest_trade_us == now_us - 5_000_000


def test_an_empty_batch_leaves_no_watermark_until_a_trade_arrives() -> None:
    recorder = ProgressRecorder("q", delay_ms=1000)
    empty = {"rows": 0, "invalid": 0, "max_trade_time_us": None}
    recorder._record(Progress(batchId=0, observedMetrics={OBSERVATION: empty}, numInputRows=0))
    assert recorder.newest_trade_us is None
    assert recorder.event_time_watermark_us(Progress(batchId=0, observedMetrics={})) is None


def test_read_offsets_come_from_either_kafka_source_and_junk_reads_as_nothing() -> None:
    native = Source('{"t-prices": {"0": 12, "1": 7, "2": 0}}')
    python = Source('{"topic": "t-other", "partitions": {"0": 3, "1": 4}}')
    junk = [Source(None), Source("not json"), Source("[1, 2]"), Source('{"t-x": {"0": "12", "a": 1}}')]
    progress = Progress(batchId=0, observedMetrics={}, sources=[native, python, *junk])
    assert read_offsets(progress) == {
        ("t-prices", 0): 12,
        ("t-prices", 1): 7,
        ("t-prices", 2): 0,
        ("t-other", 0): 3,
        ("t-other", 1): 4,
    }


def test_each_batch_sets_the_read_offsets_and_a_partition_missing_from_it_keeps_its_own() -> None:
    recorder = ProgressRecorder("q")
    first = Progress(batchId=0, observedMetrics={}, sources=[Source('{"t-read": {"0": 5, "1": 9}}')])
    recorder._record(first)
    # A later batch that names only partition 0 (a source may leave out an idle partition).
    recorder._record(Progress(batchId=1, observedMetrics={}, sources=[Source('{"t-read": {"0": 8}}')]))
    assert recorder.offsets == {("t-read", 0): 8, ("t-read", 1): 9}
    scrape = Scrape.from_text(generate_latest(REGISTRY).decode())
    assert scrape.total(m.ALERTING_READ_OFFSET, topic="t-read", partition="0") == 8
    assert scrape.total(m.ALERTING_READ_OFFSET, topic="t-read", partition="1") == 9
    # A repeated progress of an old batch changes nothing.
    recorder._record(Progress(batchId=0, observedMetrics={}, sources=[Source('{"t-read": {"0": 1}}')]))
    assert recorder.offsets[("t-read", 0)] == 8


def test_the_history_keeps_the_newest_batches_and_the_totals_count_every_one() -> None:
    recorder = ProgressRecorder("q", keep=3)
    for batch in range(5):
        recorder._record(Progress(batchId=batch, observedMetrics={}, numInputRows=10 + batch))
    # The two oldest batches were let go.
    assert [p.batchId for p in recorder.progress] == [2, 3, 4]
    assert recorder.rows_read == 10 + 11 + 12 + 13 + 14
    assert recorder.batches == 5
    scrape = Scrape.from_text(generate_latest(REGISTRY).decode())
    assert scrape.total(m.ALERTING_PROGRESS_HISTORY) == 3  # what it holds, exported
    # The default a service runs with is a count, not a run's whole history.
    assert 1 <= AlertingSettings().progress_history <= 1000
