"""`cryptopipe bench ingest-producer`, briefly: every record delivered, and the JSON fields scripts
depend on (percentiles, throughput, the floor and each setting's ratio to it)."""

from __future__ import annotations

from typing import Any

import pytest

from cryptopipe.schemas import KafkaSettings

pytestmark = pytest.mark.slow


def test_bench_ingest_producer_reports_each_setting_against_the_floor(
    kafka_settings: KafkaSettings, run_bench: Any
) -> None:
    argv = ["ingest-producer", "--bootstrap", kafka_settings.bootstrap_servers, "--rate", "400"]
    argv += ["--seconds", "1", "--linger", "0,3", "--compression", "none", "--floor-samples", "30"]
    result, report = run_bench(*argv, timeout=120)

    floor = report["floor_broker_rtt_ms"]
    assert set(floor) == {"p50", "p99"}
    assert floor["p99"] > 0
    assert [(r["linger_ms"], r["compression"]) for r in report["results"]] == [(0.0, "none"), (3.0, "none")]
    for r in report["results"]:
        assert r["delivered"] == r["sent"] == 400
        assert r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"] <= r["max_ms"]
        assert r["throughput_msgs_per_s"] > 0
        assert r["ratio_p99_to_floor"] == pytest.approx(r["p99_ms"] / floor["p99"], rel=0.01, abs=0.01)
    assert "floor (raw broker round trip, ms)" in result.stdout
