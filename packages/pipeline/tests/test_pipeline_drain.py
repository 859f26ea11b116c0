"""A run's drain, summary and the alerting job's source, on a pipeline whose services are stubbed."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest

from cryptopipe.infra import KafkaEndpoint
from cryptopipe.infra.kafka import TANSU_QUIRKS, KafkaQuirks
from cryptopipe.observability import Scrape
from cryptopipe.pipeline import AlertingConfig, ExchangeConfig, Pipeline, PipelineConfig
from cryptopipe.pipeline import drain as drain_module
from cryptopipe.pipeline.books import books_of
from cryptopipe.pipeline.drain import drain_alerting, ingest_published, wait_until
from cryptopipe.pipeline.pipeline import RunState
from cryptopipe.pipeline.summary import summary
from cryptopipe.schemas import KafkaSettings, settings_of


def _pipeline(tmp_path: Path, *, alerting: bool = False) -> Pipeline:
    config = PipelineConfig(
        exchange=ExchangeConfig(source="replay"), alerting=AlertingConfig(enabled=alerting)
    )
    return Pipeline(config, contextlib.ExitStack(), tmp_path)


def _with_stats(pipeline: Pipeline, stats: dict[str, dict[str, Any]]) -> Pipeline:
    for name, figures in stats.items():
        path = pipeline.workdir / f"{name}-stats.json"
        path.write_text(json.dumps(figures))
        pipeline.state.stats_files[name] = path
        pipeline.state.services[name] = None  # type: ignore[assignment]  # only names are read
    return pipeline


def test_summary_reports_reconciliation_unwritten_and_lost(tmp_path: Path) -> None:
    pipeline = _with_stats(
        _pipeline(tmp_path),
        {
            "ingest": {"received": 88_567, "published": 88_567, "lost": 0, "backfilled": 0, "duplicates": 0},
            "prices-consumer": {"topic": "prices", "consumed": 29_160, "written": 29_160},
        },
    )
    figures = summary(pipeline, 12.0, books_of(pipeline))
    assert figures["trades_published"] == 88_567
    assert figures["prices_written"] == 29_160
    assert figures["unwritten"] == 88_567 - 29_160
    assert figures["lost"] == figures["unwritten"]  # never 0 while trades are missing
    assert figures["reconciliation"]["balanced"] is False
    prices = figures["reconciliation"]["prices"]
    assert (prices["published"], prices["written"], prices["unwritten"], prices["surplus"]) == (
        88_567,
        29_160,
        59_407,
        0,
    )
    assert "alerts" not in figures["reconciliation"]  # no alerting job, no alerts books
    json.dumps(figures)  # the summary file must serialise


def test_summary_sums_every_shard_and_consumer(tmp_path: Path) -> None:
    pipeline = _with_stats(
        _pipeline(tmp_path),
        {
            "prices-consumer": {"consumed": 700, "written": 690, "stale": 10, "dead_lettered": 0},
            "prices-consumer-2": {"consumed": 300, "written": 300, "stale": 0, "dead_lettered": 0},
            "ingest": {"received": 610, "published": 610, "reconnects": 1},
            "ingest-2": {"received": 390, "published": 390, "reconnects": 2},
        },
    )
    assert pipeline.members("ingest") == ["ingest", "ingest-2"]
    assert ingest_published(pipeline) == 1000
    figures = summary(pipeline, 10.0, books_of(pipeline))
    assert (figures["ingest_shards"], figures["consumers"]) == (2, 2)
    assert figures["trades_received"] == figures["trades_published"] == 1000
    assert (figures["prices_written"], figures["prices_stale"], figures["unwritten"]) == (990, 10, 0)
    assert figures["reconnects"] == 3
    books = figures["reconciliation"]
    assert books["balanced"] is True
    assert books["prices"]["published"] == 1000
    assert books["prices_by_consumer"]["prices-consumer-2"]["written"] == 300
    assert books["ingest_by_shard"]["ingest"]["received"] == 610
    json.dumps(figures)
    # A shard that left no stats file: the consumers are drained by their lag alone.
    (tmp_path / "ingest-2-stats.json").unlink()
    assert ingest_published(pipeline) is None


def test_a_dead_shard_or_consumer_is_detected(tmp_path: Path) -> None:
    class Stub:
        def __init__(self, name: str, running: bool) -> None:
            self.name, self._running = name, running

        def running(self) -> bool:
            return self._running

    pipeline = _pipeline(tmp_path)
    for name in ("prices-consumer", "prices-consumer-2", "ingest", "ingest-2"):
        pipeline.state.services[name] = Stub(name, True)  # type: ignore[assignment]
    assert pipeline.dead_service() is None
    pipeline.state.services["prices-consumer-2"] = Stub("prices-consumer-2", False)  # type: ignore[assignment]
    dead = pipeline.dead_service()
    assert dead is not None
    assert dead.name == "prices-consumer-2"


@pytest.mark.parametrize(
    ("quirks", "env", "expected"),
    [
        (TANSU_QUIRKS, None, "python"),  # ListOffsets short of the log: Spark's connector would miss the tail
        (KafkaQuirks(), None, "auto"),  # Apache Kafka: the job picks its connector itself
        (TANSU_QUIRKS, "native", "native"),  # told which: done as told
    ],
)
def test_the_alerting_job_reads_with_the_python_source_where_list_offsets_falls_short(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    quirks: KafkaQuirks,
    env: str | None,
    expected: str,
) -> None:
    monkeypatch.delenv("ALERTING_SOURCE", raising=False)
    if env is not None:
        monkeypatch.setenv("ALERTING_SOURCE", env)
    pipeline = _pipeline(tmp_path)
    pipeline.kafka = KafkaEndpoint("127.0.0.1:9", "some broker", quirks, settings_of(KafkaSettings))
    assert pipeline.alerting_settings().source == expected
    said = capsys.readouterr().err
    assert ("reads with the Python Data Source" in said) is (expected == "python")


@pytest.mark.parametrize(
    ("ends", "published", "expected"),
    [
        ({0: 10, 1: 5}, 15, 3),  # the broker's ends against the job's read offsets (7 and 5)
        ({0: 7, 1: 5}, 15, 0),
        (None, 100, 10),  # ends unknown (Tansu): ingest's count against the rows the job read (90)
        (None, None, None),  # neither: unknown, not 0
    ],
)
def test_the_drain_reports_what_the_alerting_job_left_unread(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    ends: dict[int, int] | None,
    published: int | None,
    expected: int | None,
) -> None:
    pipeline = _pipeline(tmp_path)
    scrape = Scrape.from_text(
        "# TYPE cryptopipe_alerting_read_offset gauge\n"
        'cryptopipe_alerting_read_offset{topic="prices",partition="0"} 7\n'
        'cryptopipe_alerting_read_offset{topic="prices",partition="1"} 5\n'
        "# TYPE cryptopipe_alerting_input_rows counter\n"
        "cryptopipe_alerting_input_rows_total 90\n"
    )
    monkeypatch.setattr(drain_module, "prices_ends", lambda _pipeline: ends)
    monkeypatch.setattr(pipeline, "scrape", lambda *names: scrape)
    monkeypatch.setattr(drain_module, "wait_until", lambda *a, **k: expected == 0)  # the job stopped there
    drain_alerting(pipeline, published)
    assert pipeline.state.alerting_unread == expected
    said = capsys.readouterr().err
    assert ("records unread" in said) is bool(expected), said
    if expected:
        assert f"stops with {expected} prices records unread" in said


def test_a_long_drain_wait_says_what_is_left_every_5_s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pipeline = _pipeline(tmp_path)
    now = [1000.0]
    monkeypatch.setattr(drain_module.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(drain_module.time, "sleep", lambda s: now.__setitem__(0, now[0] + s))
    monkeypatch.setattr(pipeline, "scrape", lambda *names: Scrape([]))
    left = iter(range(100, 0, -1))
    done = wait_until(
        pipeline, "alerting", lambda s: False, timeout=12.0, left=lambda s: f"{next(left)} to read"
    )
    assert done is False
    lines = capsys.readouterr().err.splitlines()
    waiting = [line for line in lines if line.startswith("cryptopipe up: waiting for alerting: ")]
    assert waiting == [
        "cryptopipe up: waiting for alerting: 100 to read",
        "cryptopipe up: waiting for alerting: 99 to read",
    ]
    assert lines[-1].startswith("cryptopipe up: alerting did not catch up within 12 s")


def test_a_run_state_starts_empty() -> None:
    state = RunState(source="replay")
    assert (state.services, state.stats_files, state.alerting_unread) == ({}, {}, None)
    assert state.lag_max == {"consumer": None, "alerting": None}


def test_the_corrected_network_latency_carries_the_offsets_error_bar() -> None:
    from cryptopipe.pipeline.summary import corrected_latency

    scrape = Scrape.from_text(
        "# TYPE cryptopipe_network_latency_corrected_seconds histogram\n"
        'cryptopipe_network_latency_corrected_seconds_bucket{symbol="X",le="0.04"} 0\n'
        'cryptopipe_network_latency_corrected_seconds_bucket{symbol="X",le="0.05"} 100\n'
        'cryptopipe_network_latency_corrected_seconds_bucket{symbol="X",le="+Inf"} 100\n'
        "# TYPE cryptopipe_clock_offset_uncertainty_seconds gauge\n"
        'cryptopipe_clock_offset_uncertainty_seconds{reference="binance"} 0.002\n'
        'cryptopipe_clock_offset_uncertainty_seconds{reference="ntp"} 0.9\n'
        "# TYPE cryptopipe_clock_drift_ppm gauge\n"
        'cryptopipe_clock_drift_ppm{reference="binance"} 12.5\n'
    )
    figures = corrected_latency(scrape)
    p50 = figures["network_latency_corrected_ms"]["p50"]
    assert 40 <= p50 <= 50
    # Binance's offset (the one ingest corrects with) widens every percentile by its 2 ms, alike.
    assert figures["clock_offset_uncertainty_ms"] == 2.0
    assert figures["network_latency_corrected_interval_ms"]["p50"] == [round(p50 - 2, 3), round(p50 + 2, 3)]
    assert figures["clock_drift_ppm"] == 12.5
    # Without an estimate there is no error bar to give, and none is made up.
    assert corrected_latency(Scrape([]))["network_latency_corrected_interval_ms"] is None
