"""The result directory's reader refuses what it cannot trust; compare ranks and bootstraps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cryptopipe.measure.experiment import ResultError, read_result, write_result
from cryptopipe.measure.experiment.compare import bootstrap_median_difference, compare
from cryptopipe.measure.experiment.errors import ExperimentError
from cryptopipe.measure.experiment.run import parse_labels
from cryptopipe.measure.experiment.summarize import summarize


def _write(
    path: Path,
    name: str,
    network_ms: float,
    seed: int,
    *,
    with_samples: bool = True,
    clock_ms: float | None = None,
) -> Path:
    rng = np.random.default_rng(seed)
    samples = [
        {"metric": metric, "symbol": "btcusdt", "trade_id": i, "trade_time_us": i, "value_ms": float(value)}
        for metric, centre in (("network", network_ms), ("network_corrected", network_ms), ("system", 10.0))
        for i, value in enumerate(rng.normal(centre, 1.0, 300))
    ]
    metrics = []
    for t in range(5):
        for le, count in (("0.1", 10 * t), ("1.0", 20 * t), ("+Inf", 20 * t)):
            labels = json.dumps({"le": le, "symbol": "btcusdt"})
            metrics.append(
                {
                    "time_s": float(t),
                    "service": "prices-consumer",
                    "metric": "cryptopipe_e2e_latency_seconds_bucket",
                    "labels": labels,
                    "value": float(count),
                }
            )
        for suffix, value in (("_sum", (network_ms + 10) / 1000 * 20 * t), ("_count", 20.0 * t)):
            metrics.append(
                {
                    "time_s": float(t),
                    "service": "prices-consumer",
                    "metric": "cryptopipe_e2e_latency_seconds" + suffix,
                    "labels": json.dumps({"symbol": "btcusdt"}),
                    "value": value,
                }
            )
        metrics.append(
            {
                "time_s": float(t),
                "service": "prices-consumer",
                "metric": "cryptopipe_consumer_messages_total",
                "labels": "{}",
                "value": 20.0 * t,
            }
        )
    metadata = {
        "name": name,
        "labels": {"env": name},
        "start_utc": "2026-01-01T00:00:00+00:00",
        "end_utc": "2026-01-01T00:00:05+00:00",
        "duration_s": 5.0,
        "host": f"host-{name}",
        "cpu_count": 2,
        "platform": "Linux-6.1-x86_64",
        "versions": {"python": "3.11.2", "java": "17.0.13 (broker: /usr/bin/java)", "broker": "apache-kafka"},
        "source": {"kind": "replay", "delay_ms": int(network_ms)},
        "symbols": ["BTCUSDT"],
        "run": {"trades_received": 300, "trades_published": 300, "prices_written": 300, "lost": 0},
        "balanced": True,
        "books_line": "books balance: 300 trades received, 300 published = 300 written + 0 stale, 0 lost",
        "clock_offset_uncertainty_ms": clock_ms,
    }
    samples = samples if with_samples else []
    tables = {"samples": samples, "metrics": metrics, "summary": summarize(metrics, samples)}
    return write_result(path, metadata, tables)


def test_a_written_result_reads_back_with_its_summary(tmp_path: Path) -> None:
    result = read_result(_write(tmp_path / "a", "a", 50.0, 1))
    assert result.name == "a"
    assert result.stat("cryptopipe_e2e_latency_seconds", "mean_ms") == pytest.approx(60.0)
    assert result.stat("cryptopipe_consumer_messages_total", "rate_per_s") == pytest.approx(20.0)
    assert len(result.sample_values("system")) == 300
    assert (tmp_path / "a" / "samples.csv").read_text().count("\n") == 901


def test_missing_truncated_and_mislabelled_directories_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ResultError, match=r"no metadata\.json"):
        read_result(tmp_path)
    a = _write(tmp_path / "a", "a", 50.0, 1)
    b = _write(tmp_path / "b", "b", 60.0, 2)
    (b / "metrics.parquet").write_bytes((a / "metrics.parquet").read_bytes())
    with pytest.raises(ResultError, match="mislabelled"):
        read_result(b)
    data = (a / "samples.parquet").read_bytes()
    (a / "samples.parquet").write_bytes(data[: len(data) // 3])
    with pytest.raises(ResultError, match="truncated"):
        read_result(a)
    with pytest.raises(ResultError, match="already holds a result"):
        _write(tmp_path / "b", "b", 60.0, 2)


def test_compare_ranks_and_calls_real_differences(tmp_path: Path) -> None:
    dirs = [_write(tmp_path / n, n, ms, i) for i, (n, ms) in enumerate((("slow", 180.0), ("fast", 5.0)))]
    data = compare(dirs, tmp_path / "report")
    assert data["ranking"] == ["fast", "slow"]
    network = next(d for d in data["differences"] if d["metric"] == "network_corrected")
    assert network["estimate_ms"] == pytest.approx(175.0, abs=0.5)
    assert network["real"]
    system = next(d for d in data["differences"] if d["metric"] == "system")
    assert not system["real"]  # same distribution: noise
    assert (tmp_path / "report" / "latency_parts.svg").exists()
    with pytest.raises(ExperimentError, match="both named"):
        compare([dirs[0], dirs[0]], tmp_path / "r2")


def test_the_clock_error_bar_widens_the_network_verdict(tmp_path: Path) -> None:
    """A 3 ms difference in corrected network latency is real with tight clocks, and noise when
    each run's offset could be 2 ms off (the intervals widen by both bars); system latency carries
    no clock error. Without a recorded bar the verdict says so."""

    def network(clock: float | None, tag: str) -> dict[str, object]:
        runs = [
            _write(tmp_path / f"{tag}-a", "a", 13.0, 1, clock_ms=clock),
            _write(tmp_path / f"{tag}-b", "b", 10.0, 2, clock_ms=clock),
        ]
        data = compare(runs, tmp_path / f"report-{tag}")
        return next(d for d in data["differences"] if d["metric"] == "network_corrected")

    tight, loose, unknown = network(0.1, "tight"), network(2.0, "loose"), network(None, "unknown")
    assert tight["real"]
    assert tight["verdict"] == "real"
    assert not loose["real"]
    assert loose["verdict"] == "noise"
    low, high = loose["ci95_ms"]
    assert loose["ci95_with_clock_ms"] == [pytest.approx(low - 4.0), pytest.approx(high + 4.0)]
    assert unknown["verdict"] == "real (no clock error bar)"
    html = (tmp_path / "report-loose" / "index.html").read_text()
    assert "with the clock&#x27;s error bar" in html or "with the clock's error bar" in html


def test_bootstrap_interval_holds_the_true_difference() -> None:
    rng = np.random.default_rng(3)
    est, low, high = bootstrap_median_difference(list(rng.normal(130, 2, 400)), list(rng.normal(5, 2, 400)))
    assert low < 125 < high
    assert est == pytest.approx(125, abs=1)


def test_labels_must_be_key_value() -> None:
    assert parse_labels(["region=eu-central-1", "x="]) == {"region": "eu-central-1", "x": ""}
    with pytest.raises(ExperimentError, match="KEY=VALUE"):
        parse_labels(["oops"])


def test_compare_takes_an_export_without_raw_samples_from_its_histograms(tmp_path: Path) -> None:
    full = _write(tmp_path / "local", "local", 5.0, 1)
    exported = _write(tmp_path / "compose", "compose", 180.0, 2, with_samples=False)
    data = compare([exported, full], tmp_path / "report")
    assert data["ranking"] == ["local", "compose"]
    assert data["environments"]["compose"]["raw_samples"] is False
    assert data["differences"] == []
    assert "Without raw samples" in (tmp_path / "report" / "summary.md").read_text()
