"""Quantiles read back from /metrics agree with the samples that produced them."""

from __future__ import annotations

import urllib.request

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import REGISTRY, CollectorRegistry, Histogram, generate_latest

from cryptopipe.observability import LATENCY_BUCKETS, Scrape, exact_percentiles_ms, histogram_quantile
from cryptopipe.observability import metrics as m


def test_every_metric_is_prefixed_and_listed_once() -> None:
    names = [entry.name for entry in m.catalogue()]
    assert len(names) == len(set(names))
    assert all(name.startswith("cryptopipe_") for name in names)
    assert LATENCY_BUCKETS[0] == 50e-6
    assert LATENCY_BUCKETS[-1] == 60.0


def test_no_series_has_a_created_twin() -> None:
    """Counters and histograms export no ``_created`` series: a line per series nothing reads."""
    m.ERRORS.labels(component="created-test", reason="probe").inc()
    m.CONSUMER_BATCH.labels(consumer="created-test").observe(0.01)
    page = generate_latest(REGISTRY).decode()
    assert 'cryptopipe_errors_total{component="created-test",reason="probe"} 1.0' in page
    assert "_created" not in page


@given(st.lists(st.floats(min_value=60e-6, max_value=50.0), min_size=20, max_size=400))
def test_histogram_quantile_lands_in_the_right_bucket(values: list[float]) -> None:
    registry = CollectorRegistry()
    histogram = Histogram("x_seconds", "x", buckets=LATENCY_BUCKETS, registry=registry)
    for value in values:
        histogram.observe(value)
    scrape = Scrape.from_text(generate_latest(registry).decode())
    for q in (0.5, 0.95, 0.99):
        estimate = scrape.quantile(q, "x_seconds")
        assert estimate is not None
        exact = sorted(values)[max(0, int(q * len(values) + 0.999999) - 1)]
        # The estimate lies in the same ~1.5x bucket as the exact nearest-rank value (or a neighbour).
        assert exact / 1.5**2 <= estimate <= exact * 1.5**2


def test_empty_histogram_has_no_quantile() -> None:
    assert histogram_quantile(0.99, []) is None
    assert histogram_quantile(0.99, [(1.0, 0.0), (float("inf"), 0.0)]) is None


def test_exact_percentiles() -> None:
    assert exact_percentiles_ms(range(1, 101)) == {"p50": 0.05, "p95": 0.095, "p99": 0.099}
    assert exact_percentiles_ms([]) == {"p50": None, "p95": None, "p99": None}


def test_served_metrics_can_be_read_back() -> None:
    from cryptopipe.observability import serve_metrics

    port = serve_metrics("observability-test", 0)
    m.ERRORS.labels(component="observability-test", reason="probe").inc(3)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert b"cryptopipe_build_info" in response.read()
    scrape = Scrape.from_urls(f"http://127.0.0.1:{port}/metrics")
    assert scrape.total("cryptopipe_errors_total", component="observability-test") == 3


def test_a_scrape_is_read_by_catalogue_metric_as_well_as_by_name() -> None:

    from cryptopipe.observability.query import series_name

    text = (
        'cryptopipe_prices_written_total{symbol="BTCUSDT"} 5.0\n'
        'cryptopipe_consumer_lag{component="prices-consumer",partition="0"} 7.0\n'
        'cryptopipe_system_latency_seconds_bucket{le="0.01"} 1.0\n'
        'cryptopipe_system_latency_seconds_bucket{le="+Inf"} 2.0\n'
    )
    scrape = Scrape.from_text(text)
    assert series_name(m.PRICES_WRITTEN) == "cryptopipe_prices_written_total"
    assert series_name(m.CONSUMER_LAG) == "cryptopipe_consumer_lag"
    assert scrape.total(m.PRICES_WRITTEN) == scrape.total("cryptopipe_prices_written_total") == 5.0
    assert scrape.total(m.CONSUMER_LAG, component="prices-consumer") == 7.0
    assert scrape.buckets(m.SYSTEM_LATENCY) == [(0.01, 1.0), (float("inf"), 2.0)]
