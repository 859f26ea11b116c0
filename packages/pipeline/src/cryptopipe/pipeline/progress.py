"""The line a running pipeline prints every few seconds, and the highest lags it saw."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cryptopipe.observability import Scrape
from cryptopipe.observability import metrics as m
from cryptopipe.observability.query import Series

#: Alerts the alerts consumer wrote to Redis, each once (the histogram of their latency counts them).
ALERTS_WRITTEN = "cryptopipe_alert_latency_seconds_count"

if TYPE_CHECKING:
    from cryptopipe.pipeline.pipeline import Pipeline


def progress_line(pipeline: Pipeline, elapsed: float) -> str:
    """Trades received, published and written so far, alerts in Redis, both lags and the E2E p99."""
    state = pipeline.state
    # A service stopped on purpose (ingest after its tape ended) still counts with its last figures.
    scrape = Scrape.merged(pipeline.scrape(), *(state.final[n] for n in state.stopped if n in state.final))
    e2e = scrape.percentiles_ms(m.E2E_LATENCY)["p99"]
    lag = record_lag(pipeline, scrape, "consumer", m.CONSUMER_LAG)
    spark_lag = record_lag(pipeline, scrape, "alerting", m.ALERTING_LAG)
    alerts = scrape.total(ALERTS_WRITTEN) if "alerts-consumer" in pipeline.state.services else None
    return (
        f"cryptopipe up: {elapsed:6.1f} s  received {scrape.total(m.TRADES_RECEIVED):.0f}"
        f"  published {scrape.total(m.TRADES_PUBLISHED):.0f}"
        f"  written {scrape.total(m.PRICES_WRITTEN):.0f}"
        + (f"  alerts {alerts:.0f}" if alerts is not None else "")
        + f"  lag {lag or 0:.0f}"
        + (f"  spark lag {spark_lag:.0f}" if spark_lag is not None else "")
        + f"  e2e p99 {f'{e2e:.1f}' if e2e is not None else '-'} ms"
        + ("  (tape finished)" if pipeline.state.tape_finished else "")
    )


def record_lag(pipeline: Pipeline, scrape: Scrape, reader: str, gauge: Series) -> float | None:
    """One reader's lag in ``scrape`` (None when not exported), kept in the run's ``lag_max``."""
    if not scrape.samples(gauge):
        return None
    lag = scrape.total(gauge)
    seen = pipeline.state.lag_max[reader]
    pipeline.state.lag_max[reader] = lag if seen is None else max(seen, lag)
    return lag
