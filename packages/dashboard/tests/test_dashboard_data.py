"""The page's figures, assembled from a real Redis (written by the store's sinks) and real metrics."""

from __future__ import annotations

import math
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest

from cryptopipe.dashboard import data
from cryptopipe.infra.process import LocalServer, free_port
from cryptopipe.infra.prometheus import resolve_prometheus_binary
from cryptopipe.infra.testing import eventually
from cryptopipe.observability import LATENCY_BUCKETS, Scrape, catalogue, metrics
from cryptopipe.store.alerts import AlertStore
from cryptopipe.store.prices import PriceStore

from .conftest import Market, now_us


def _store(market: Market) -> PriceStore:
    return PriceStore(market.client, market.settings.key_prefix)


def test_alert_feed_is_newest_first_filters_and_counts(market: Market) -> None:
    t = now_us()
    market.alert("BTCUSDT", "SELL", 0.015, raised_us=t - 3_000_000)
    market.alert("ETHUSDT", "BUY", -0.02, raised_us=t - 1_000_000, rule="pct_5m")
    market.alert("BTCUSDT", "BUY", -0.011, raised_us=t - 2_000_000, kind="early")

    alerts = data.load_alerts(AlertStore(market.client, market.settings.key_prefix), limit=50)
    assert [a.raised_time_us for a in alerts] == [t - 1_000_000, t - 2_000_000, t - 3_000_000]

    everything = data.alert_feed(alerts)
    assert everything.counts == {"BTCUSDT": 2, "ETHUSDT": 1}
    assert everything.rules == ("pct_1m", "pct_5m")

    buys = data.alert_feed(alerts, sides=["BUY"])
    assert [(a.symbol, a.side) for a in buys.alerts] == [("ETHUSDT", "BUY"), ("BTCUSDT", "BUY")]
    assert buys.counts == {"BTCUSDT": 1, "ETHUSDT": 1}

    narrow = data.alert_feed(alerts, symbols=["BTCUSDT"], rules=["pct_1m"], sides=["SELL"])
    assert [a.pct_change for a in narrow.alerts] == [0.015]


def test_health_reads_the_services_endpoint(market: Market, metrics_url: str) -> None:
    market.series("BTCUSDT", ["1", "2", "3"], spacing_s=0.1)  # the sink observes e2e/system latency
    health = data.load_health(
        prometheus_url="",
        metrics_urls=[metrics_url],
        window="1m",
        timeout=5,
        runtime={"broker": "tansu 0.6.0"},
    )
    assert health.problems == ()
    assert health.runtime == {"broker": "tansu 0.6.0"}
    expected = Scrape.from_urls(metrics_url).percentiles_ms(data.E2E)
    assert health.latency_ms["E2E"]["p50"] is not None
    # Same figures as the observability package computes from the same endpoint (not recomputed).
    assert health.latency_ms["E2E"] == expected
    assert set(health.latency_ms) == {"E2E", "System", "Network", "Network (skew-corrected)", "Alert"}


def test_health_shows_the_spark_query_lag_once_it_is_exported(metrics_url: str) -> None:
    def spark_lag() -> float | None:
        return data.load_health(
            prometheus_url="", metrics_urls=[metrics_url], window="1m", timeout=5, runtime={}
        ).spark_lag

    if not Scrape.from_urls(metrics_url).samples(data.SPARK_LAG):  # no alerting test ran in this process
        assert spark_lag() is None
    metrics.ALERTING_LAG.labels(topic="t-dashboard-prices", partition="0").set(7)
    metrics.ALERTING_LAG.labels(topic="t-dashboard-prices", partition="1").set(5)
    # Every partition of every query this process exports, summed (other tests' series included).
    lag = spark_lag()
    assert lag == Scrape.from_urls(metrics_url).total(data.SPARK_LAG)
    assert lag is not None
    assert lag >= 12


@pytest.fixture
def prometheus(metrics_url: str, tmp_path: Path) -> Iterator[str]:
    """A real Prometheus scraping this process's /metrics every 200 ms."""
    binary = resolve_prometheus_binary()
    if binary is None:
        pytest.skip("no prometheus binary (apt-get install prometheus)")
    port = free_port()
    target = metrics_url.removeprefix("http://").removesuffix("/metrics")
    (tmp_path / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 200ms\n  evaluation_interval: 1s\n"
        f"scrape_configs:\n  - job_name: tests\n    static_configs:\n      - targets: ['{target}']\n",
        "utf-8",
    )

    def ready(_server: LocalServer) -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=1) as response:
            return bool(response.status == 200)

    server = LocalServer(
        "prometheus",
        [
            binary,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            "--storage.tsdb.path={workdir}/data",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        ready=ready,
    )
    with server:
        yield f"http://127.0.0.1:{port}"


def test_health_from_prometheus_takes_precedence(market: Market, metrics_url: str, prometheus: str) -> None:
    def figures() -> data.Health | None:
        market.trade("BTCUSDT", "1")  # keep the histograms moving, so rate() has something to say
        health = data.load_health(
            prometheus_url=prometheus,
            metrics_urls=["http://127.0.0.1:1/metrics"],
            window="1m",
            timeout=2,
            runtime={},
        )
        assert health.problems == ()
        return health if health.latency_ms["E2E"]["p99"] is not None else None

    health = eventually(figures, timeout=60, interval=0.2, message="Prometheus never had E2E percentiles")
    assert health.source.startswith(f"Prometheus {prometheus}")
    assert health.latency_ms["System"]["p50"] is not None


def test_stalled_consumers_come_from_prometheus_too(metrics_url: str, prometheus: str) -> None:
    gauge = metrics.CONSUMER_SECONDS_SINCE_PROGRESS
    gauge.labels(consumer="stall-test").set(30)  # this process's /metrics, which Prometheus scrapes
    try:

        def stalled() -> tuple[data.ConsumerProgress, ...]:
            health = data.load_health(
                prometheus_url=prometheus, metrics_urls=[], window="1m", timeout=2, runtime={}
            )
            assert health.problems == ()
            return tuple(c for c in health.stalled if c.consumer == "stall-test")

        (consumer,) = eventually(stalled, timeout=60, interval=0.2, message="no stalled consumer seen")
        assert consumer.status() == "stalled for 30 s"
    finally:
        gauge.remove("stall-test")


def test_every_metric_the_panel_reads_is_in_the_catalogue() -> None:
    names = {entry.name for entry in catalogue()}
    read = {data.THROUGHPUT, data.CONSUMER_LAG, data.CLOCK_OFFSET, data.SPARK_BATCH, data.SINCE_PROGRESS}
    read |= {data.MEMORY}
    read |= {name for _, name in data.LATENCIES}
    assert read <= names, read - names


def test_spark_batch_time_and_clock_skew_are_shown_once_exported() -> None:
    registry = CollectorRegistry()
    batch = Histogram(data.SPARK_BATCH, "batch", registry=registry, buckets=LATENCY_BUCKETS)
    offset = Gauge(data.CLOCK_OFFSET, "offset", ["reference"], registry=registry)
    before = data.health_from_scrape(
        Scrape.from_text(generate_latest(registry).decode()), source="t", runtime={}
    )
    assert before.spark_batch_ms == {}  # defined but never observed: n/a, not "n/a / n/a"

    for seconds in (0.4, 0.5, 0.6, 0.7):
        batch.observe(seconds)
    offset.labels(reference="binance").set(-1.27)
    after = data.health_from_scrape(
        Scrape.from_text(generate_latest(registry).decode()), source="t", runtime={}
    )
    assert after.spark_batch_ms["p50"] is not None
    assert 400 <= after.spark_batch_ms["p50"] <= 700
    assert after.clock_offset_ms == {"binance": -1270.0}


def test_a_stalled_consumer_reads_stalled_for_n_seconds_the_others_ok() -> None:
    registry = CollectorRegistry()
    since = Gauge(data.SINCE_PROGRESS, "since progress", ["consumer"], registry=registry)
    absent = data.health_from_scrape(
        Scrape.from_text(generate_latest(registry).decode()), source="t", runtime={}
    )
    assert absent.consumers == ()  # no consumer exports it: no line at all

    since.labels(consumer="prices").set(0)
    since.labels(consumer="alerts").set(42.4)
    health = data.health_from_scrape(
        Scrape.from_text(generate_latest(registry).decode()), source="t", runtime={}
    )

    assert [(c.consumer, c.stalled, c.status()) for c in health.consumers] == [
        ("alerts", True, "stalled for 42 s"),
        ("prices", False, "OK"),
    ]
    (stalled,) = health.stalled
    assert stalled.warning().startswith("**alerts consumer stalled for 42 s**")
    assert "recovers by itself" in stalled.warning()


def test_memory_is_shown_per_process_largest_first() -> None:
    registry = CollectorRegistry()
    rss = Gauge(data.MEMORY, "rss", ["component"], registry=registry)
    absent = data.health_from_scrape(
        Scrape.from_text(generate_latest(registry).decode()), source="t", runtime={}
    )
    assert absent.memory_mb == {}  # nothing exported: no chart

    rss.labels(component="ingest").set(80e6)
    rss.labels(component="alerting").set(1_400e6)
    rss.labels(component="broker").set(math.nan)
    # two endpoints can each report a share of one component (two consumers): they add up
    text = generate_latest(registry).decode()
    other = CollectorRegistry()
    Gauge(data.MEMORY, "rss", ["component"], registry=other).labels(component="ingest").set(20e6)
    health = data.health_from_scrape(
        Scrape.from_text(text, generate_latest(other).decode()), source="t", runtime={}
    )
    assert health.memory_mb == {"alerting": 1400.0, "ingest": 100.0}
    assert list(health.memory_mb) == ["alerting", "ingest"]


def test_waiting_shorter_than_the_stall_timeout_is_not_a_stall() -> None:
    # Under load lag is briefly > 0 between batches: the consumers' own stall timeout decides.
    below = data.ConsumerProgress("prices", data.DEFAULT_STALL_TIMEOUT_S - 0.5)
    at = data.ConsumerProgress("prices", data.DEFAULT_STALL_TIMEOUT_S)
    assert (below.stalled, below.status()) == (False, "OK")
    assert at.stalled
    assert data.consumer_progress([("prices", 1.0), ("prices", 7.0), ("alerts", math.nan)]) == (
        data.ConsumerProgress("prices", 7.0),
    )


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_unreachable_endpoint_is_named_and_the_others_still_count(metrics_url: str) -> None:
    dead = f"http://127.0.0.1:{_closed_port()}/metrics"
    health = data.load_health(
        prometheus_url="", metrics_urls=[dead, metrics_url], window="1m", timeout=2, runtime={}
    )
    assert len(health.problems) == 1
    assert dead in health.problems[0].what
    assert "DASHBOARD_METRICS_URLS" in health.problems[0].fix


def test_nothing_configured_says_how_to_configure() -> None:
    health = data.load_health(prometheus_url="", metrics_urls=[], window="1m", timeout=1, runtime={})
    assert health.problems == (data.NO_METRICS,)
    assert all(v is None for values in health.latency_ms.values() for v in values.values())


def test_unreachable_prometheus_is_named() -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    health = data.load_health(
        prometheus_url=url, metrics_urls=["http://ignored/metrics"], window="1m", timeout=2, runtime={}
    )
    (problem,) = health.problems
    assert url in problem.what
    assert "PROMETHEUS_URL" in problem.fix


def test_redis_problem_names_the_server_without_its_password() -> None:
    url = "redis://:s3cret-pass@127.0.0.1:6390/0"
    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    with pytest.raises(redis.RedisError) as info:
        client.ping()
    problem = data.redis_problem(info.value, url, secret="s3cret-pass")
    assert problem.what == "Redis at redis://127.0.0.1:6390/0 is unreachable"
    assert "REDIS_URL" in problem.fix
    assert "recovers by itself" in problem.fix
    assert "s3cret" not in problem.message()
