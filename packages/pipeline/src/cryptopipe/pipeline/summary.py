"""A run's figures as one JSON-ready mapping: counts, books, latencies, lags, and the alerts raised."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cryptopipe.observability import Scrape
from cryptopipe.observability import metrics as m
from cryptopipe.observability.query import Series
from cryptopipe.pipeline.books import Books
from cryptopipe.store import AlertStore, connect_redis

if TYPE_CHECKING:
    from cryptopipe.pipeline.pipeline import Pipeline

_ALERT_FIELDS = ("rule", "symbol", "kind", "side", "window_start_us", "window_end_us")


def alerts(pipeline: Pipeline) -> list[dict[str, Any]]:
    """Every alert in the Redis feed, oldest first, in the summary's shape."""
    reader = pipeline.redis_reader()
    if "alerts-consumer" not in pipeline.state.services or reader is None:
        return []
    client = connect_redis(reader.url.get_secret_value())
    try:
        feed = AlertStore(client, pipeline.key_prefix).recent(100_000)
    finally:
        client.close()
    return [
        {
            **{f: getattr(a, f) for f in _ALERT_FIELDS},
            "open": str(a.open),
            "close": str(a.close),
            "pct_change": a.pct_change,
        }
        for a in reversed(feed)
    ]


def final_of(pipeline: Pipeline, component: str) -> Scrape:
    """The last scrape of all of a component's processes together."""
    groups = pipeline.state.final_groups
    return groups[component] if component in groups else pipeline.state.final.get(component, Scrape([]))


def clock_offset_ms(scrape: Scrape) -> float | None:
    """The offset estimate ingest used (reference clock minus local clock), or None if it had none."""
    samples = scrape.samples(m.CLOCK_OFFSET, reference="binance")
    return round(samples[0].value * 1000, 3) if samples else None


def _clock_ms(scrape: Scrape, metric: Series, **labels: str) -> float | None:
    samples = scrape.samples(metric, reference="binance", **labels)
    return round(samples[0].value * 1000, 3) if samples else None


def corrected_latency(scrape: Scrape) -> dict[str, Any]:
    """The skew-corrected network latency with the offset's error bar (docs/clock-skew.md).

    The offset's 95 % interval (``clock_offset_uncertainty_ms``, ± around ``clock_offset_ms``)
    moves every percentile of the corrected latency by the same amount, so each percentile gets
    ``[value - u, value + u]`` in ``network_latency_corrected_interval_ms``. The system part is
    timed on our clock alone and carries no such error.
    """
    corrected = scrape.percentiles_ms(m.NETWORK_LATENCY_CORRECTED)
    half = _clock_ms(scrape, m.CLOCK_OFFSET_UNCERTAINTY)
    interval = None
    if half is not None:
        interval = {
            k: None if v is None else [round(v - half, 3), round(v + half, 3)] for k, v in corrected.items()
        }
    components = {
        sample.labels["component"]: round(sample.value * 1000, 3)
        for sample in scrape.samples(m.CLOCK_UNCERTAINTY_COMPONENT, reference="binance")
    }
    drift = scrape.samples(m.CLOCK_DRIFT, reference="binance")
    return {
        "network_latency_corrected_ms": corrected,
        "network_latency_corrected_interval_ms": interval,
        "clock_offset_ms": clock_offset_ms(scrape),
        "clock_offset_uncertainty_ms": half,
        "clock_offset_uncertainty_components_ms": components or None,
        "clock_drift_ppm": round(drift[0].value, 3) if drift else None,
        "clock_steps": int(scrape.total(m.CLOCK_STEPS, reference="binance")),
    }


def summary(pipeline: Pipeline, elapsed: float, books: Books) -> dict[str, Any]:
    """The figures ``up --summary-json`` writes (see the README for each field)."""
    state = pipeline.state
    shards = pipeline.members("ingest")
    prices = books.topics.get("prices")
    raised = alerts(pipeline)
    return {
        "source": state.source,
        "symbols": state.symbols,
        "ingest_shards": len(shards),
        "consumers": len(books.consumers.get("prices", {})),
        "book_consumers": len(books.consumers.get("book-updates", {})),
        "run_seconds": round(elapsed, 3),
        "broker": state.broker,
        "redis": state.redis,
        "trades_received": books.ingest.received,
        "trades_published": books.ingest.published,
        "trades_backfilled": books.ingest.backfilled,
        "prices_written": prices.handled.written if prices is not None else 0,
        "prices_stale": prices.handled.stale if prices is not None else 0,
        "alerting_source": state.alerting_source,
        "alerting_express": state.alerting_express,
        "alerting_unread": state.alerting_unread,
        "alerts_raised": len(raised),
        "alerts": raised,
        "dead_lettered": books.ingest.dead_lettered
        + sum(topic.handled.dead_lettered for topic in books.topics.values()),
        "unwritten": books.unwritten,
        "lost": books.lost,
        "reconciliation": books.as_dict(),
        "reconnects": sum(shard.reconnects for shard in books.shards.values()),
        "depth": pipeline.config.depth,
        "book_resyncs": books.ingest.book_resyncs,
        "book_ticker_checks": books.ingest.book_ticker_checks,
        "book_ticker_mismatches": books.ingest.book_ticker_mismatches,
        **_latency_and_lag(pipeline),
    }


def _latency_and_lag(pipeline: Pipeline) -> dict[str, Any]:
    ingest = final_of(pipeline, "ingest")
    consumer = final_of(pipeline, "prices-consumer")
    return {
        "consumer_lag_final": consumer.total(m.CONSUMER_LAG),
        "consumer_lag_max": pipeline.state.lag_max["consumer"],
        "alerting_lag_max": pipeline.state.lag_max["alerting"],
        "network_latency_ms": ingest.percentiles_ms(m.NETWORK_LATENCY),
        **corrected_latency(ingest),
        "system_latency_ms": consumer.percentiles_ms(m.SYSTEM_LATENCY),
        "e2e_latency_ms": consumer.percentiles_ms(m.E2E_LATENCY),
    }
