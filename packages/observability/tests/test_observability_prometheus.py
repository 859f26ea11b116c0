"""Generated Prometheus config and rules: valid for promtool, and a real Prometheus uses them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from cryptopipe.infra.testing import require_prometheus_tool
from cryptopipe.observability import catalogue
from cryptopipe.observability import prometheus as prom

REPO = Path(__file__).resolve().parents[3]


def test_config_has_one_job_per_component_and_no_target_labels() -> None:
    text = prom.render_config(
        {"ingest": ["127.0.0.1:9101"], "broker": [], "up": ["127.0.0.1:1", "127.0.0.1:2"]}
    )
    config = yaml.safe_load(text)
    assert config["global"] == {"scrape_interval": "2s", "scrape_timeout": "2s", "evaluation_interval": "2s"}
    assert config["rule_files"] == list(prom.RULE_FILES)
    assert config["scrape_configs"] == [
        {"job_name": "ingest", "static_configs": [{"targets": ["127.0.0.1:9101"]}]},
        {"job_name": "up", "static_configs": [{"targets": ["127.0.0.1:1", "127.0.0.1:2"]}]},
    ]
    with pytest.raises(ValueError, match="scrape_interval"):
        prom.render_config({}, scrape_interval="2 seconds")


def test_compose_targets_follow_the_port_table() -> None:
    targets = prom.compose_targets({"ingest": 9999})
    assert targets["ingest"] == ["ingest:9999"]
    assert "prices-consumer" not in targets
    assert targets["cadvisor"] == ["cadvisor:8080"]
    assert prom.compose_targets()["ingest"] == [f"ingest:{prom.DEFAULT_METRICS_PORTS['ingest']}"]


def test_every_histogram_has_mean_p95_p99_at_every_level() -> None:
    recorded = {
        rule["record"]
        for group in prom.recording_rules()["groups"]
        for rule in group["rules"]
        if "record" in rule
    }
    histograms = [entry for entry in catalogue() if entry.type == "histogram"]
    assert histograms
    for entry in histograms:
        levels = ["all", "_".join(entry.labels)] if entry.labels else ["all"]
        for level in levels:
            for operation in ("mean", "p95", "p99"):
                assert prom.histogram_series(entry.name, level, operation) in recorded


def test_alert_bounds_reach_the_rules() -> None:
    rules = prom.alerting_rules(prom.AlertBounds(no_trades_for="17s", max_clock_offset_seconds=0.25))
    by_name = {rule["alert"]: rule for rule in rules["groups"][0]["rules"]}
    assert {"ConsumerLagGrowing", "NoTrades", "ClockSkewTooLarge", "SparkBatchSlow", "ErrorRateHigh",
            "DeadLetters"} <= set(by_name)  # fmt: skip
    assert "[17s]" in by_name["NoTrades"]["expr"]
    assert "> 0.25" in by_name["ClockSkewTooLarge"]["expr"]
    with pytest.raises(ValueError, match="lag_growing_for"):
        prom.AlertBounds(lag_growing_for="five minutes")


def test_consumer_stalled_fires_on_the_consumers_own_stall_clock() -> None:
    by_name = {rule["alert"]: rule for rule in prom.alerting_rules()["groups"][0]["rules"]}
    rule = by_name["ConsumerStalled"]
    assert rule["expr"] == "max by (consumer) (cryptopipe_consumer_seconds_since_progress) > 10"
    assert "for" not in rule  # the metric is the stall's duration already
    assert rule["labels"] == {"severity": "critical"}
    assert "{{ $labels.consumer }}" in rule["annotations"]["summary"]
    assert "recreates its Kafka consumer" in rule["annotations"]["description"]
    entry = {e.name: e for e in catalogue()}["cryptopipe_consumer_seconds_since_progress"]
    assert (entry.type, entry.labels) == ("gauge", ("consumer",))

    tighter = prom.alerting_rules(prom.AlertBounds(max_seconds_since_progress=2.5))
    (stalled,) = [r for r in tighter["groups"][0]["rules"] if r["alert"] == "ConsumerStalled"]
    assert stalled["expr"].endswith(" > 2.5")


def test_promtool_accepts_config_and_rules(tmp_path: Path) -> None:
    promtool = require_prometheus_tool("promtool")
    config = prom.write_config_dir(tmp_path, {"ingest": ["127.0.0.1:9101"]})
    result = subprocess.run(
        [promtool, "check", "config", str(config)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    committed = REPO / "compose" / "prometheus"
    result = subprocess.run(
        [promtool, "check", "config", str(committed / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rules = [str(committed / name) for name in prom.RULE_FILES]
    result = subprocess.run([promtool, "check", "rules", *rules], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
