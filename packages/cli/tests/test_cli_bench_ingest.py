"""`cryptopipe bench ingest-producer`, briefly: every record delivered, and the JSON fields scripts
depend on (percentiles, throughput, the floor and each setting's ratio to it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cryptopipe.schemas import KafkaSettings

pytestmark = pytest.mark.slow


def test_bench_ingest_producer_reports_each_setting_against_the_floor(
    tmp_path: Path, kafka_settings: KafkaSettings
) -> None:
    out = tmp_path / "bench.json"
    argv = [sys.executable, "-m", "cryptopipe.cli", "bench", "ingest-producer"]
    argv += ["--bootstrap", kafka_settings.bootstrap_servers, "--rate", "400", "--seconds", "1"]
    argv += ["--linger", "0,3", "--compression", "none", "--floor-samples", "30", "--json", str(out)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(out.read_text())

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
