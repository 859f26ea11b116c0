"""The line a running pipeline prints every few seconds, and the highest lags it saw."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cryptopipe.observability import Scrape
from cryptopipe.observability import metrics as m
from cryptopipe.observability.query import Series

if TYPE_CHECKING:
    from cryptopipe.pipeline.pipeline import Pipeline


def progress_line(pipeline: Pipeline, elapsed: float) -> str:
    """Trades received, published and written so far, both lags and the E2E p99."""
    scrape = pipeline.scrape()
    e2e = scrape.percentiles_ms(m.E2E_LATENCY)
    lag = record_lag(pipeline, scrape, "consumer", m.CONSUMER_LAG)
    spark_lag = record_lag(pipeline, scrape, "alerting", m.ALERTING_LAG)
    return (
        f"cryptopipe up: {elapsed:6.1f} s  received {scrape.total(m.TRADES_RECEIVED):.0f}"
        f"  published {scrape.total(m.TRADES_PUBLISHED):.0f}"
        f"  written {scrape.total(m.PRICES_WRITTEN):.0f}"
        f"  lag {lag or 0:.0f}"
        + (f"  spark lag {spark_lag:.0f}" if spark_lag is not None else "")
        + f"  e2e p99 {e2e['p99'] if e2e['p99'] is not None else '-'} ms"
    )


def record_lag(pipeline: Pipeline, scrape: Scrape, reader: str, gauge: Series) -> float | None:
    """One reader's lag in ``scrape`` (None when not exported), kept in the run's ``lag_max``."""
    if not scrape.samples(gauge):
        return None
    lag = scrape.total(gauge)
    seen = pipeline.state.lag_max[reader]
    pipeline.state.lag_max[reader] = lag if seen is None else max(seen, lag)
    return lag
