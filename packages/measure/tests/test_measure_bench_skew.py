"""``cryptopipe bench skew``: the JSON contract on a tiny grid, seeded and repeatable (no timings)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from cryptopipe.measure import bench_skew
from cryptopipe.measure.bench import main as bench_main
from cryptopipe.measure.skew_anchors import chrony_anchor, ntplib_anchor
from cryptopipe.measure.skew_grid import Sampling, Scenario, quantiles

TINY = ["--trials", "4", "--samples", "20", "--window", "12", "--ntplib-exchanges", "2", "--chrony-runs", "0"]
NAMED = {
    "offset_ms",
    "delay_ms",
    "jitter_ms",
    "asymmetry_ms",
    "drift_ppm",
    "step_ms",
    "trials",
    "offset_error_ms",
    "network_p50_error_ms",
    "coverage",
    "step_detected_after_intervals",
}


def _run(tmp_path: Path, *extra: str) -> dict[str, Any]:
    out = tmp_path / "skew.json"
    argv = ["skew", *TINY, "--real-trials", "0", "--scenario", "target", "--scenario", "step", *extra]
    assert bench_main([*argv, "--json", str(out)]) == 0
    return dict(json.loads(out.read_text()))


def test_the_json_has_the_fields_the_issue_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = _run(tmp_path)

    target, step = result["scenarios"]
    for entry in (target, step):
        assert entry.keys() >= NAMED
        assert entry["trials"] == 4
        assert set(entry["offset_error_ms"]) == {"p50", "p95", "max"}
        assert 0 <= entry["coverage"] <= 1
    assert (target["offset_ms"], target["delay_ms"], target["jitter_ms"]) == (250.0, 40.0, 20.0)
    assert target["step_detected_after_intervals"] is None
    assert step["step_ms"] == 100.0
    assert isinstance(step["step_detected_after_intervals"], int)
    assert step["step_detected_after_intervals"] <= 2
    estimators = [a["estimator"] for a in result["anchors"]]
    assert any("ntplib" in e and "real" in e for e in estimators)
    assert all(a.keys() >= NAMED for a in result["anchors"])
    assert "target: offset +250 ms" in capsys.readouterr().out


def test_the_grid_is_seeded(tmp_path: Path) -> None:
    first = _run(tmp_path)["scenarios"]
    second = _run(tmp_path)["scenarios"]

    assert first == second


def test_an_unknown_scenario_is_named() -> None:
    with pytest.raises(SystemExit, match="unknown scenario 'nope'"):
        bench_main(["skew", "--scenario", "nope"])


def test_quantiles_are_nearest_rank() -> None:
    assert quantiles([]) is None
    assert quantiles([float(v) for v in range(1, 101)]) == {"p50": 50.0, "p95": 95.0, "max": 100.0}


def test_ntplib_sees_a_symmetric_fixed_path_exactly() -> None:
    entry = ntplib_anchor(Scenario("fixed", delay_ms=5.0, jitter_ms=0.0), trials=3)

    assert entry["trials"] == 3
    assert entry["coverage"] == 1.0  # NTP's bound: within half the round trip, whatever the scheduling


@pytest.mark.slow
def test_chronyd_measures_without_setting_the_clock_or_says_why_not() -> None:
    entry = chrony_anchor(Scenario("fixed", delay_ms=2.0, jitter_ms=0.0), trials=1, parallel=1)

    if shutil.which("chronyd") is None:
        assert "apt-get install -y chrony" in entry["unavailable"]
    else:
        assert entry["offset_error_ms"]["max"] < 50.0  # it measured the 250 ms offset, not nothing


@pytest.mark.slow
def test_real_trials_against_the_replay_exchange_beside_the_simulation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bench_skew, "REAL_SAMPLING", Sampling(samples=4, interval_s=0.05, window=6))

    real, simulated = bench_skew.real_entries(Scenario("target", jitter_ms=5.0, trials=20), trials=2)

    assert real["trials"] == 2
    assert "real" in real["estimator"]
    assert "simulated" in simulated["estimator"]
    assert real["coverage"] >= 0.5  # a 6-interval fit at 40 ± 5 ms: ± several ms
    assert real["offset_error_ms"]["max"] < 50.0
