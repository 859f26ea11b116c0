"""`cryptopipe experiment run` and `compare` end to end: the replay exchange's --delay-ms stands in
for three environments (5, 130 and 180 ms away). The first run starts its own broker and Redis, as a
user's would; the others use the session's real Kafka and Redis."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from cryptopipe.measure.experiment import ResultError, read_result
from cryptopipe.schemas import KafkaSettings, RedisSettings

pytestmark = pytest.mark.slow

DELAYS_MS = (5, 130, 180)


def _run(out: Path, name: str, delay_ms: int, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "cryptopipe.cli",
        "experiment",
        "run",
        "--name",
        name,
        "--label",
        f"delay_ms={delay_ms}",
        "--duration",
        "10",
        "--out",
        str(out),
        "--source",
        "replay",
        "--rate",
        "20",
        "--delay-ms",
        str(delay_ms),
        "--no-alerting",
        "--no-prometheus",
        "--metrics-base-port",
        "0",
    ]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=180, check=False)


def _experiment(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cryptopipe.cli", "experiment", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_delays_are_recovered_ranked_and_bad_directories_refused(
    tmp_path: Path,
    kafka_settings: KafkaSettings,
    redis_settings: RedisSettings,
    pipeline_env: Any,
    clean_env: Any,
) -> None:
    base = pipeline_env(kafka_settings, redis_settings)
    dirs, outputs = [], []
    for delay in DELAYS_MS:
        # Each environment gets its own topics and keys: the runs read their topic from the start.
        env = base | {
            "KAFKA_TOPIC_PREFIX": f"{kafka_settings.topic_prefix}d{delay}-",
            "REDIS_KEY_PREFIX": f"{redis_settings.key_prefix}d{delay}:",
        }
        out = tmp_path / f"env-{delay}"
        done = _run(out, f"delay-{delay}ms", delay, clean_env() if delay == DELAYS_MS[0] else env)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "10 of 10 s measured" in done.stderr  # the progress bar
        assert "s/s" not in done.stderr
        dirs.append(out)
        outputs.append(done.stdout)

    lines = outputs[0].splitlines()
    first = [
        i for i, line in enumerate(lines) if line.startswith("cryptopipe experiment run: delay-5ms: measured")
    ]
    assert first, outputs[0]
    closing = lines[first[-1] :]
    assert closing[1].startswith("cryptopipe experiment run: trades: ")
    assert re.fullmatch(
        r"cryptopipe experiment run: E2E latency p50 / p95 / p99: "
        r"[\d.]+ / [\d.]+ / [\d.]+ ms over [\d,]+ trades",
        closing[2],
    ), closing
    assert closing[-2].startswith("cryptopipe experiment run: books: books balance: ")
    assert closing[-1] == f"cryptopipe experiment run: result written to {dirs[0]}"

    result = read_result(dirs[0])
    # The run started its own Apache Kafka broker, on Java.
    assert re.match(r"\d+[.\d]* \(broker: .*java\)$", result.metadata["versions"]["java"])
    assert result.metadata["labels"] == {"delay_ms": "5"}
    assert result.metadata["source"]["delay_ms"] == 5
    assert result.metadata["versions"]["python"]
    assert result.metadata["cpu_count"]
    assert result.metadata["balanced"] is True
    for table in ("samples", "metrics", "summary"):
        assert (dirs[0] / f"{table}.csv").read_text().count("\n") == pq.read_table(
            dirs[0] / f"{table}.parquet"
        ).num_rows + 1
    assert set(result.samples["metric"].to_pylist()) >= {"network", "network_corrected", "system", "e2e"}
    assert result.stat("cryptopipe_e2e_latency_seconds", "p99_ms") is not None

    report = tmp_path / "report"
    done = _experiment("compare", *map(str, reversed(dirs)), "--out", str(report))
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads((report / "report.json").read_text())
    assert data["ranking"] == [f"delay-{d}ms" for d in DELAYS_MS]
    for diff in data["differences"]:
        if diff["metric"] != "network_corrected":
            continue
        delay = int(diff["name"].removeprefix("delay-").removesuffix("ms"))
        recovered = DELAYS_MS[0] + diff["estimate_ms"]
        assert abs(recovered - delay) <= 2.0, (diff, recovered)
        assert diff["real"]
    for chart in ("latency_parts", "latency_cdf", "throughput_lag", "resources"):
        assert (report / f"{chart}.png").stat().st_size > 0
        assert (report / f"{chart}.svg").read_text().startswith("<?xml")
    page = (report / "index.html").read_text()
    assert "latency_parts.png" in page
    assert page.count("<table>") == 3
    assert "<pre>" not in page
    assert "Run details" in page
    assert "| 1 | delay-5ms |" in (report / "summary.md").read_text()

    truncated = tmp_path / "truncated"
    shutil.copytree(dirs[1], truncated)
    samples = truncated / "samples.parquet"
    samples.write_bytes(samples.read_bytes()[: samples.stat().st_size // 2])
    done = _experiment("compare", str(dirs[0]), str(truncated), "--out", str(tmp_path / "r2"))
    assert done.returncode == 2
    assert "samples.parquet" in done.stdout
    assert "truncated" in done.stdout

    mislabelled = tmp_path / "mislabelled"
    shutil.copytree(dirs[1], mislabelled)
    shutil.copy(dirs[2] / "summary.parquet", mislabelled / "summary.parquet")
    with pytest.raises(ResultError, match="mislabelled"):
        read_result(mislabelled)
    done = _experiment("compare", str(dirs[0]), str(mislabelled), "--out", str(tmp_path / "r3"))
    assert done.returncode == 2
    assert "summary.parquet" in done.stdout
    assert "mislabelled" in done.stdout


def test_export_builds_a_result_directory_from_a_real_prometheus(tmp_path: Path, require_binary: Any) -> None:
    """A live /metrics endpoint with known E2E observations, scraped by a real Prometheus: the
    exported directory reads back, and its summary holds the observed mean and counter rate."""
    import time
    from datetime import UTC, datetime

    from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

    from cryptopipe.infra.prometheus import start_embedded_prometheus
    from cryptopipe.infra.testing import eventually
    from cryptopipe.observability import LATENCY_BUCKETS
    from cryptopipe.observability import prometheus as prom

    require_binary("prometheus")
    registry = CollectorRegistry()
    e2e = Histogram(
        "cryptopipe_e2e_latency_seconds", "e2e", ("symbol",), buckets=LATENCY_BUCKETS, registry=registry
    )
    received = Counter("cryptopipe_ingest_trades_received", "trades", ("symbol",), registry=registry)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        address = f"127.0.0.1:{server.server_address[1]}"
        prometheus = start_embedded_prometheus(
            {"prices-consumer": [address]}, scrape_interval="1s", directory=tmp_path / "prom"
        )
        assert prometheus is not None
        with prometheus:
            eventually(
                lambda: prom.target_health(prometheus.url) == {"prices-consumer": ["up"]},
                timeout=30,
                message="target never came up",
            )
            start = datetime.now(UTC)
            for _ in range(8):
                for _ in range(50):
                    e2e.labels(symbol="btcusdt").observe(0.040)
                received.labels(symbol="btcusdt").inc(50)
                time.sleep(1)
            end = datetime.now(UTC)
            time.sleep(2)  # the last scrape
            out = tmp_path / "exported"
            done = _experiment(
                "export",
                "--prometheus",
                prometheus.url,
                "--start",
                start.isoformat(),
                "--end",
                end.isoformat(),
                "--name",
                "compose",
                "--step",
                "1",
                "--out",
                str(out),
            )
            assert done.returncode == 0, done.stdout + done.stderr
            bad = _experiment(
                "export", "--prometheus", prometheus.url, "--start", "yesterday", "--end", "1", "--name", "x"
            )
            assert bad.returncode == 1
            assert "not a time" in bad.stdout
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    result = read_result(out)
    assert result.metadata["source"]["kind"] == "prometheus"
    assert result.metadata["raw_samples"] is False
    assert result.metadata["symbols"] == ["btcusdt"]
    assert result.stat("cryptopipe_e2e_latency_seconds", "mean_ms") == pytest.approx(40.0)
    rate = result.stat("cryptopipe_ingest_trades_received_total", "rate_per_s", '{"symbol": "btcusdt"}')
    assert rate is not None
    assert 30 <= rate <= 70  # 50 a second, seen through 1 s scrapes
