"""`cryptopipe bench alerting` with book load, briefly: book-updates records beside the trades, book
rules (mid moves early and final, a spread level held 1 s) on the same lane, and the book alerts
reported apart. Behaviour only: every field is there and consistent, and the book alerts raised
are exactly the reference model's over the records produced. No timing is asserted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

BOOK_RULES = "mid:3s:0.2%;mid:3s:0.2%:early:name=mid-3s-early;spread>5bps:1s"


def test_bench_alerting_reports_book_alerts_apart_and_they_match_the_reference_model(
    tmp_path: Path, run_bench: Any
) -> None:
    argv = ["alerting", "--rate", "200", "--duration", "9", "--warmup", "2", "--symbols", "2"]
    argv += ["--rule", "3s:0.2%;3s:0.2%:early:name=3s-early", "--floor-samples", "30"]
    argv += ["--book-rate", "60", "--book-symbols", "2", "--book-rule", BOOK_RULES]
    argv += ["--checkpoint-dir", str(tmp_path / "checkpoint")]
    result, figures = run_bench(*argv, timeout=300)

    load = figures["book_load"]
    assert load["symbols"] == ["BOOK0USDT", "BOOK1USDT"]
    assert load["records_produced"] > 60 * 9  # two resets, then ~60 updates a second
    assert load["records_read_by_express"] == load["records_produced"]

    # Every book alert raised (the first copy in Redis: the lane's or Spark's) is one the reference
    # model raises over the same records, and none is missing.
    checked = figures["book_alerts"]
    assert checked["reference"] > 0
    assert checked["raised"] == checked["matching"] == checked["reference"]
    assert checked["missing"] == checked["unexpected"] == 0

    # Latencies: each kind measured, against the update that decided it (none without one).
    measured = figures["book_alerts_measured"]
    assert measured["without_trigger"] == 0
    assert measured["early"] > 0
    assert measured["level"] > 0
    assert measured["final"] > measured["level"]  # mid windows' finals as well as the spread's
    assert measured["early"] + measured["final"] <= checked["raised"]  # the warm-up's are left out
    for name in ("book_early_alert_latency_ms", "book_final_alert_latency_ms", "book_level_alert_latency_ms"):
        assert set(figures[name]) == {"p50", "p95", "p99"}
        assert figures[name]["p50"] is not None
        assert figures[name]["p50"] <= figures[name]["p95"] <= figures[name]["p99"]
    floor_p99 = figures["floor_broker_rtt_ms"]["p99"]
    for kind in ("early", "final"):
        assert figures[f"ratio_book_{kind}_p99_to_floor"] == pytest.approx(
            figures[f"book_{kind}_alert_latency_ms"]["p99"] / floor_p99, rel=0.01, abs=0.01
        )
    # The trade alerts are still measured on their own, beside the book load.
    assert figures["alerts"]["missing_windows"] == 0
    assert figures["early_alert_latency_ms"]["p50"] is not None
    assert figures["final_alert_latency_ms"]["p50"] is not None
    assert "book alerts against the reference model" in result.stdout
