"""ProgressRecorder: Spark's query progress to metrics, without Spark (a progress is a record)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import REGISTRY, generate_latest

from cryptopipe.alerting.listener import ProgressRecorder
from cryptopipe.alerting.plan import OBSERVATION
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

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)


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
