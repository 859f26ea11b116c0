"""`experiment run --attach`: a pipeline someone else runs, measured through its /metrics."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from cryptopipe.measure.experiment import read_result
from cryptopipe.measure.experiment.run import main
from cryptopipe.observability import LATENCY_BUCKETS


@pytest.fixture
def endpoint() -> Iterator[str]:
    registry = CollectorRegistry()
    e2e = Histogram(
        "cryptopipe_e2e_latency_seconds", "e2e", ("symbol",), buckets=LATENCY_BUCKETS, registry=registry
    )
    written = Counter("cryptopipe_prices_written", "written", ("symbol",), registry=registry)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    stop = threading.Event()

    def feed() -> None:
        while not stop.wait(0.05):
            e2e.labels(symbol="ethusdt").observe(0.025)
            written.labels(symbol="ethusdt").inc()

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/metrics"
    stop.set()
    feeder.join(5)
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_attach_writes_a_result_from_the_running_services(
    endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    out_dir = tmp_path / "attached"
    argv = ["--name", "remote", "--duration", "3", "--scrape-interval", "0.5", "--out", str(out_dir)]
    assert main([*argv, "--attach", f"prices-consumer={endpoint}"]) == 0
    result = read_result(out_dir)
    assert result.metadata["source"] == {
        "kind": "attach",
        "metrics": {"prices-consumer": endpoint},
        "prices_tap": False,
    }
    assert result.metadata["raw_samples"] is False
    assert result.stat("cryptopipe_e2e_latency_seconds", "mean_ms") == pytest.approx(25.0)
    assert set(result.metrics["service"].to_pylist()) == {"prices-consumer"}
    out, err = capsys.readouterr()
    assert "3 of 3 s measured" in err
    assert "s/s" not in err
    lines = out.splitlines()
    assert lines[0].startswith("cryptopipe experiment run: remote: measured 3 s, ")
    assert "cryptopipe experiment run: E2E latency p50 / p95 / p99: " in out
    assert "(from the histogram)" in out  # no tap: no per-trade samples
    assert "cryptopipe experiment run: books: not kept (no books for this kind of run)" in lines
    assert lines[-1] == f"cryptopipe experiment run: result written to {out_dir}"


def test_attach_refuses_bad_urls_and_up_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--name", "x", "--duration", "1", "--out", str(tmp_path / "x")]
    assert main([*argv, "--attach", "ingest=localhost:9101"]) == 1
    assert "expected SERVICE=http://" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main([*argv, "--attach", "ingest=http://127.0.0.1:1/metrics", "--source", "replay"])
