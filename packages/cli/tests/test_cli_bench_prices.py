"""`cryptopipe bench prices` end to end, briefly: the JSON fields scripts depend on, and its books."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.slow


def test_bench_prices_writes_its_figures_and_balances_its_books(run_bench: Any) -> None:
    argv = ["prices", "--rate", "300", "--duration", "4", "--warmup", "2", "--ladder", "300"]
    argv += ["--step-seconds", "3", "--floor-samples", "30"]
    result, figures = run_bench(*argv, timeout=240)
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
    assert set(figures["floor_broker_rtt_ms"]) == {"p50", "p99"}
    assert set(figures["floor_broker_rtt_cold_ms"]) == {"p50", "p99"}
    assert set(figures["floor_redis_set_ms"]) == {"p50", "p99"}
    assert figures["ratio_p99_to_floor"] == pytest.approx(
        figures["system_latency_ms"]["p99"] / figures["floor_broker_rtt_ms"]["p99"], rel=0.01
    )
    assert figures["max_sustained_msgs_per_s"] in (0.0, 300.0)
    assert [step["offered_msgs_per_s"] for step in figures["ladder"]] == [300.0]
    assert "books balance" in result.stderr.strip().splitlines()[-1]
