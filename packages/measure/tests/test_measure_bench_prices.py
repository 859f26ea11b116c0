"""`cryptopipe bench prices` end to end, briefly: the JSON fields scripts depend on, and its books."""

from __future__ import annotations

import time
from typing import Any

import pytest

from cryptopipe.measure.floors import measure_broker_rtt_at_rate
from cryptopipe.schemas import KafkaSettings

pytestmark = pytest.mark.slow


def test_bench_prices_writes_its_figures_and_balances_its_books(run_bench: Any) -> None:
    argv = ["prices", "--rate", "300", "--duration", "4", "--warmup", "2", "--ladder", "300"]
    argv += ["--step-seconds", "3", "--floor-samples", "30", "--floor-at-rate-seconds", "1"]
    # librdkafka's statistics every 0.5 s, so a 4 s run has windows to report.
    result, figures = run_bench(*argv, timeout=240, extra_env={"INGEST_STATISTICS_INTERVAL_MS": "500"})
    assert figures["with_alerting"] is False
    assert figures["trades_published"] > 0
    assert figures["prices_written"] == figures["trades_published"]
    assert figures["unwritten"] == 0
    assert figures["lost"] == 0
    assert figures["reconciliation"]["balanced"] is True
    assert figures["warmup"]["balanced"] is True
    assert figures["warmup"]["trades_published"] > 0
    for key in ("p50", "p95", "p99"):
        assert figures["system_latency_ms"][key] is not None
    stages = figures["system_latency_stages_ms"]
    assert set(stages) == {"receive_to_fetch", "fetch_to_written", "p99_tail_mean_ms"}
    for stage in ("receive_to_fetch", "fetch_to_written"):
        assert (
            0 <= stages[stage]["p50"] <= stages[stage]["p99"] <= figures["system_latency_ms"]["p99"] * 1.0001
        )
    producer = figures["ingest_producer_latency_ms"]
    assert set(producer) == {"queue", "outbuf", "rtt"}
    assert 0 < producer["rtt"]["p50"] <= producer["rtt"]["p99"]  # librdkafka's own window
    assert set(figures["floor_broker_rtt_ms"]) == {"p50", "p99"}
    assert set(figures["floor_broker_rtt_cold_ms"]) == {"p50", "p99"}
    assert set(figures["floor_redis_set_ms"]) == {"p50", "p99"}
    assert figures["ratio_p99_to_floor"] == pytest.approx(
        figures["system_latency_ms"]["p99"] / figures["floor_broker_rtt_ms"]["p99"], rel=0.01
    )
    at_rate = figures["floor_broker_rtt_at_rate_ms"]
    assert 0 < at_rate["p50"] <= at_rate["p99"]
    assert figures["ratio_p99_to_floor_at_rate"] == pytest.approx(
        figures["system_latency_ms"]["p99"] / at_rate["p99"], rel=0.01
    )
    assert figures["max_sustained_msgs_per_s"] in (0.0, 300.0)
    assert [step["offered_msgs_per_s"] for step in figures["ladder"]] == [300.0]
    assert "books balance" in result.stderr.strip().splitlines()[-1]


def test_the_floor_at_rate_times_every_record_it_paced(kafka_settings: KafkaSettings) -> None:
    """500 records/s for 1 s: all 500 come back, each timed from its own produce() call."""
    started = time.perf_counter()
    rtts = measure_broker_rtt_at_rate(kafka_settings, rate=500, seconds=1.0)
    elapsed = time.perf_counter() - started
    assert len(rtts) == 500
    assert all(rtt > 0 for rtt in rtts)
    assert max(rtts) < elapsed * 1000  # no record is timed from before the run began
    # Paced, not sent in one burst: the last record left about a second after the first.
    assert elapsed >= 0.99


@pytest.mark.parametrize(("rate", "seconds"), [(0, 1.0), (-5, 1.0), (500, 0)])
def test_the_floor_at_rate_refuses_a_rate_or_time_of_zero(
    kafka_settings: KafkaSettings, rate: float, seconds: float
) -> None:
    with pytest.raises(ValueError, match="above 0"):
        measure_broker_rtt_at_rate(kafka_settings, rate=rate, seconds=seconds)
