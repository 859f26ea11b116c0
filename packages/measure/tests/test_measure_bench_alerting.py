"""`cryptopipe bench alerting` end to end, briefly: its alerts all reach Redis, and the JSON fields
scripts depend on (latencies, floors and their ratios) are there and consistent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow


def test_bench_alerting_measures_every_window_and_reports_its_floors(tmp_path: Path, run_bench: Any) -> None:
    argv = ["alerting", "--rate", "300", "--duration", "6", "--warmup", "2", "--symbols", "2"]
    argv += ["--rule", "2s:0.2%;2s:0.2%:early:name=2s-early", "--floor-samples", "30"]
    argv += ["--checkpoint-dir", str(tmp_path / "checkpoint")]
    result, figures = run_bench(*argv, timeout=300)

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
