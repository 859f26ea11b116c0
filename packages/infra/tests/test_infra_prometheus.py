"""The local Prometheus server of the embedded mode: it scrapes live endpoints and answers PromQL
over the rules observability generates; without a binary, ``up`` runs on and says what to install."""

from __future__ import annotations

import json
import math
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from cryptopipe.infra.prometheus import start_embedded_prometheus, start_prometheus
from cryptopipe.infra.testing import eventually, require_prometheus_tool
from cryptopipe.observability import LATENCY_BUCKETS
from cryptopipe.observability import prometheus as prom
from cryptopipe.observability.prometheus import PrometheusError


class Endpoint:
    """A small live /metrics endpoint with its own registry, like one service's serve_metrics."""

    def __init__(self, symbol: str) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "cryptopipe_e2e_latency_seconds",
            "e2e",
            ("symbol",),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.trades = Counter(
            "cryptopipe_ingest_trades_received", "trades", ("symbol",), registry=self.registry
        )
        self.spark_lag = Gauge(
            "cryptopipe_alerting_lag", "lag", ("topic", "partition"), registry=self.registry
        )
        self.symbol = symbol
        self.server, self.thread = start_http_server(0, addr="127.0.0.1", registry=self.registry)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"

    def observe(self, i: int) -> None:
        self.latency.labels(symbol=self.symbol).observe(0.001 * (1 + i % 50))
        self.trades.labels(symbol=self.symbol).inc()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def endpoints() -> Iterator[list[Endpoint]]:
    live = [Endpoint("btcusdt"), Endpoint("ethusdt")]
    stop = threading.Event()

    def feed() -> None:
        i = 0
        while not stop.wait(0.02):
            for endpoint in live:
                endpoint.observe(i)
            i += 1

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    yield live
    stop.set()
    feeder.join(5)
    for endpoint in live:
        endpoint.close()


def _number(rows: list[tuple[dict[str, str], float]]) -> float | None:
    if len(rows) == 1 and math.isfinite(rows[0][1]):
        return rows[0][1]
    return None


@pytest.mark.slow
def test_real_prometheus_scrapes_every_component_and_answers_p99(
    endpoints: list[Endpoint], tmp_path: Path
) -> None:
    require_prometheus_tool("prometheus")
    targets = {"ingest": [endpoints[0].address], "prices-consumer": [endpoints[1].address]}
    server = start_embedded_prometheus(
        targets, scrape_interval="1s", directory=tmp_path, retention="6h", retention_size="100MB"
    )
    assert server is not None
    with server:
        assert server.url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(f"{server.url}/api/v1/status/flags", timeout=10) as response:
            flags = json.loads(response.read())["data"]
        assert (flags["storage.tsdb.retention.time"], flags["storage.tsdb.retention.size"]) == (
            "6h",
            "100MiB",
        )  # Prometheus units are binary
        eventually(
            lambda: prom.target_health(server.url) == {"ingest": ["up"], "prices-consumer": ["up"]},
            timeout=30,
            message="targets never came up",
        )
        assert {labels["job"] for labels, up in server.query("up") if up == 1} == set(targets)

        raw = "histogram_quantile(0.99, sum by (le) (rate(cryptopipe_e2e_latency_seconds_bucket[1m])))"
        p99 = eventually(lambda: _number(server.query(raw)), timeout=30, message=f"no number from {raw}")
        assert p99 is not None
        assert 0.001 <= p99 <= 0.1  # observations are 1..50 ms; the 50 ms bucket reaches ~66 ms

        recorded = prom.histogram_series("cryptopipe_e2e_latency_seconds", "all", "p99")
        eventually(lambda: _number(server.query(recorded)), timeout=30, message=f"{recorded} never recorded")
        by_symbol = prom.histogram_series("cryptopipe_e2e_latency_seconds", "symbol", "p99")
        eventually(
            lambda: len(server.query(by_symbol)) == 2, timeout=30, message=f"{by_symbol} not per symbol"
        )
        assert prom.all_rules_healthy(server.url) == []

        # The Spark query's lag joins the consumers' in the lag series, as consumer="alerting".
        endpoints[1].spark_lag.labels(topic="prices", partition="0").set(5)
        endpoints[1].spark_lag.labels(topic="prices", partition="1").set(7)
        lag = f'{prom.LAG_SERIES}{{consumer="alerting",topic="prices",source="consumer"}}'
        eventually(lambda: _number(server.query(lag)) == 12, timeout=30, message=f"{lag} never read 5 + 7")

        # The orchestrator may learn a port late: rewrite the config and reload.
        prom.write_config_dir(tmp_path, {**targets, "skew-monitor": [endpoints[0].address]}, "1s")
        server.reload()
        eventually(
            lambda: prom.target_health(server.url).get("skew-monitor") == ["up"],
            timeout=30,
            message="reloaded target never came up",
        )


def test_without_a_binary_up_runs_on_and_start_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert start_embedded_prometheus({"ingest": ["127.0.0.1:9101"]}, directory=tmp_path) is None
    with pytest.raises(PrometheusError, match="apt-get install prometheus"):
        start_prometheus(tmp_path / "prometheus.yml")
