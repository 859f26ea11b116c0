"""Benchmark helpers that need no server: merging consumers' samples, the latency split, codec."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_bench_codec_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "codec.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cryptopipe.cli",
            "bench",
            "codec",
            "--messages",
            "500",
            "--repeat",
            "3",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(out.read_text())
    assert figures["json_bytes_mean"] > 0
    assert set(figures["json_encode_us"]) == {"p50", "p95", "p99"}
    assert figures["ratio_json_to_msgpack_p50"] > 0


def test_bench_merges_every_consumers_latency_samples() -> None:
    from cryptopipe.measure import bench_prices, samples

    # Below the reservoirs' capacity every sample is kept.
    assert sorted(samples.merge_samples([(3, [1, 2, 3]), (2, [10, 20])])) == [1, 2, 3, 10, 20]
    assert samples.merge_samples([]) == []
    # A full reservoir: each part thinned to the smallest kept fraction (here 1/10), so the
    # busier consumer keeps its weight.
    merged = samples.merge_samples([(1000, list(range(100))), (20, [7] * 20)])
    assert len(merged) == 100 + 2
    assert merged.count(7) >= 2
    # Rows (system, consumer's part) stay whole when merged.
    rows = samples.merge_samples([(1000, [(i, i // 2) for i in range(100)]), (20, [(7, 3)] * 20)])
    assert all(part == system // 2 for system, part in rows if system != 7)
    cpu = bench_prices.component_cpu(
        {"ingest": 1.0, "ingest-2": 2.0, "broker": 5.0},
        {"ingest": 3.0, "ingest-2": 3.5, "broker": 9.0, "prices-consumer-2": 1.25},
    )
    assert cpu == {"ingest": 3.5, "broker": 4.0, "prices-consumer": 1.25}


def test_bench_splits_system_latency_where_the_consumer_fetched(tmp_path: Path) -> None:
    from cryptopipe.measure import samples

    # 100 trades: 98 spend about 1 ms before the fetch and 0.2 ms after it; the two slowest
    # spend 9 ms before it. The p99 (nearest rank) is the 99th: the tail is those two, and the
    # split says that the first stage made it.
    rows: list[tuple[int, int | None]] = [(1200 + i, 200) for i in range(98)] + [(9200, 200), (9400, 400)]
    stages = samples.latency_stages(rows)
    assert stages is not None
    assert stages["receive_to_fetch"] == {"p50": 1.049, "p95": 1.094, "p99": 9.0}
    assert stages["fetch_to_written"] == {"p50": 0.2, "p95": 0.2, "p99": 0.2}
    assert stages["p99_tail_mean_ms"] == {"receive_to_fetch": 9.0, "fetch_to_written": 0.3}
    # A consumer that wrote no split: no figures rather than made-up ones.
    assert samples.latency_stages([(1200, None)]) is None

    # A samples file as the consumer writes it, with and without the split.
    path = tmp_path / "latency.json"
    path.write_text(json.dumps({"seen": 3, "samples_us": [5, 6], "fetch_to_written_samples_us": [1, 2]}))
    assert samples.read_samples(path) == (3, [(5, 1), (6, 2)])
    path.write_text(json.dumps({"seen": 2, "samples_us": [5, 6], "fetch_to_written_samples_us": []}))
    assert samples.read_samples(path) == (2, [(5, None), (6, None)])
    assert samples.read_samples(tmp_path / "missing.json") == (0, [])
