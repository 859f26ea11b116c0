"""`cryptopipe bench alerting` end to end, briefly: its alerts all reach Redis, and the JSON fields
scripts depend on (latencies, floors and their ratios) are there and consistent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cryptopipe.schemas import KafkaSettings, RedisSettings

pytestmark = pytest.mark.slow


def test_bench_alerting_measures_every_window_and_reports_its_floors(
    tmp_path: Path, kafka_settings: KafkaSettings, redis_settings: RedisSettings
) -> None:
    out = tmp_path / "bench.json"
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "REDIS_URL": redis_settings.url.get_secret_value(),
    }
    argv = [sys.executable, "-m", "cryptopipe.cli", "bench", "alerting", "--rate", "300", "--duration", "6"]
    argv += ["--warmup", "2", "--symbols", "2", "--rule", "2s:0.2%;2s:0.2%:early:name=2s-early"]
    argv += ["--floor-samples", "30", "--json", str(out)]
    argv += ["--checkpoint-dir", str(tmp_path / "checkpoint")]
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    figures = json.loads(out.read_text())

    assert figures["mode"] == "micro-batch"
    assert figures["express"] is True
    alerts = figures["alerts"]
    # Every (symbol, window) the run could close crossed the threshold: each gave its alert.
    assert alerts["expected_windows"] > 0
    assert alerts["missing_windows"] == 0
    assert alerts["without_trigger"] == 0
    assert alerts["measured"] > 0
    assert 0 < alerts["express_published"] <= alerts["published_total"]
    assert figures["input"]["kept_up"] is True

    for name in ("early_alert_latency_ms", "final_alert_latency_ms"):
        assert figures[name]["p50"] is not None
        assert figures[name]["p50"] <= figures[name]["p99"]
    assert set(figures["floor_broker_rtt_ms"]) == {"p50", "p99"}
    assert set(figures["floor_redis_set_ms"]) == {"p50", "p99"}
    floor_p99 = figures["floor_broker_rtt_ms"]["p99"]
    assert floor_p99 > 0
    for kind in ("early", "final"):
        assert figures[f"ratio_{kind}_p99_to_floor"] == pytest.approx(
            figures[f"{kind}_alert_latency_ms"]["p99"] / floor_p99, rel=0.01, abs=0.01
        )
    assert "p99 / broker floor p99" in result.stdout
