"""Alerting rules: metric names from the catalogue, bounds from :class:`AlertBounds`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryptopipe.observability import metrics as m
from cryptopipe.observability.prometheus.config import duration
from cryptopipe.observability.prometheus.recording import LAG_SERIES, WINDOW, histogram_series
from cryptopipe.observability.query import series_name


@dataclass(frozen=True, slots=True)
class AlertBounds:
    """The N's and bounds of the alerting rules (defaults are what compose ships)."""

    lag_growing_for: str = "5m"
    min_lag: int = 100
    #: A consumer's own stall clock (records waiting, none written); it recovers by itself at 5 s
    #: (seek) and 10 s (new Kafka consumer), so above this the self-recovery is not enough.
    max_seconds_since_progress: float = 10.0
    no_trades_for: str = "60s"
    max_clock_offset_seconds: float = 0.5
    clock_offset_for: str = "1m"
    max_batch_seconds: float = 2.0
    batch_slow_for: str = "2m"
    max_error_rate_per_second: float = 0.1
    errors_for: str = "1m"
    target_down_for: str = "30s"

    def __post_init__(self) -> None:
        for name in (
            "lag_growing_for",
            "no_trades_for",
            "clock_offset_for",
            "batch_slow_for",
            "errors_for",
            "target_down_for",
        ):
            duration(getattr(self, name), name)


#: The Spark job's micro-batch duration histogram (the alerting component's metric).
BATCH_DURATION = series_name(m.ALERTING_BATCH_DURATION)
#: Seconds a consumer has had records waiting without writing any (0 while caught up).
STALL_METRIC = series_name(m.CONSUMER_SECONDS_SINCE_PROGRESS)


def _alert(
    name: str, expr: str, duration: str | None, severity: str, summary: str, description: str = ""
) -> dict[str, Any]:
    """One alerting rule; ``duration`` None fires at once (no ``for``)."""
    rule: dict[str, Any] = {"alert": name, "expr": expr}
    if duration:
        rule["for"] = duration
    rule["labels"] = {"severity": severity}
    rule["annotations"] = {"summary": summary}
    if description:
        rule["annotations"]["description"] = description
    return rule


def _consumer_alerts(b: AlertBounds) -> list[dict[str, Any]]:
    return [
        _alert(
            "ConsumerLagGrowing",
            f'deriv({LAG_SERIES}{{source="consumer"}}[{b.lag_growing_for}]) > 0 '
            f'and {LAG_SERIES}{{source="consumer"}} > {b.min_lag}',
            b.lag_growing_for,
            "warning",
            f"{{{{ $labels.consumer }}}} on {{{{ $labels.topic }}}}: lag {{{{ $value }}}} and growing for "
            f"{b.lag_growing_for}",
        ),
        _alert(
            # No "for": the metric is itself the stall's duration, so the alert fires as soon as a
            # consumer has had records waiting, and written none, for longer than the bound.
            "ConsumerStalled",
            f"max by (consumer) ({STALL_METRIC}) > {b.max_seconds_since_progress:g}",
            None,
            "critical",
            "{{ $labels.consumer }} consumer stalled: records waiting, none written to Redis for "
            '{{ $value | printf "%.0f" }} s',
            "Lag > 0 and no progress. The consumer recovers by itself where it can: after its stall "
            "timeout (default 5 s) it seeks the stalled partitions back to the last written offset, one "
            "timeout later it commits, closes and recreates its Kafka consumer (again at growing "
            "intervals). Still firing: check cryptopipe_errors_total (Redis failing?), the broker, and "
            "cryptopipe_consumer_stall_recoveries_total.",
        ),
    ]


def _source_alerts(b: AlertBounds) -> list[dict[str, Any]]:
    """The exchange feed and the clock it is measured against."""
    offset = series_name(m.CLOCK_OFFSET)
    return [
        _alert(
            "NoTrades",
            f"(sum(increase({series_name(m.TRADES_RECEIVED)}[{b.no_trades_for}])) or vector(0)) == 0",
            None,
            "critical",
            f"no trade received from the exchange for {b.no_trades_for}",
        ),
        _alert(
            "ClockSkewTooLarge",
            f"abs({offset}) > {b.max_clock_offset_seconds}",
            b.clock_offset_for,
            "warning",
            f"clock offset against {{{{ $labels.reference }}}} is {{{{ $value }}}} s "
            f"(bound {b.max_clock_offset_seconds} s)",
        ),
        _alert(
            "ClockEstimateStale",
            f"max by (reference) ({series_name(m.CLOCK_ESTIMATE_STALE)}) == 1",
            "5m",
            "warning",
            "no fresh clock-offset estimate against {{ $labels.reference }}",
        ),
    ]


def _spark_alerts(b: AlertBounds) -> list[dict[str, Any]]:
    return [
        _alert(
            "SparkBatchSlow",
            f"{histogram_series(BATCH_DURATION, 'all', 'p99')} > {b.max_batch_seconds}",
            b.batch_slow_for,
            "warning",
            f"Spark micro-batch p99 is {{{{ $value }}}} s (bound {b.max_batch_seconds} s)",
        ),
        _alert(
            "SparkQueryRestarted",
            f"increase({series_name(m.ALERTING_QUERY_RESTARTS)}[5m]) > 0",
            None,
            "warning",
            "the Spark alerting query failed and restarted from its checkpoint",
        ),
    ]


def _loss_alerts(b: AlertBounds) -> list[dict[str, Any]]:
    """Errors, dead letters, lost trades and targets that stopped answering."""
    return [
        _alert(
            "ErrorRateHigh",
            f"sum by (component, reason) (rate({series_name(m.ERRORS)}[{WINDOW}]))"
            f" > {b.max_error_rate_per_second}",
            b.errors_for,
            "warning",
            "{{ $labels.component }}: {{ $value }} errors/s ({{ $labels.reason }})",
        ),
        _alert(
            "DeadLetters",
            f"sum by (component, reason) (increase({series_name(m.DEAD_LETTERS)}[{WINDOW}])) > 0",
            None,
            "warning",
            "{{ $labels.component }} dead-lettered messages ({{ $labels.reason }})",
        ),
        _alert(
            "TradesLost",
            f"sum by (reason) (increase({series_name(m.TRADES_LOST)}[{WINDOW}])) > 0",
            None,
            "critical",
            "ingest lost trades ({{ $labels.reason }})",
        ),
        _alert(
            "TargetDown",
            "up == 0",
            b.target_down_for,
            "critical",
            "{{ $labels.job }} at {{ $labels.instance }} is down",
        ),
    ]


def alerting_rules(bounds: AlertBounds | None = None) -> dict[str, Any]:
    """Every alerting rule, its metric names taken from the catalogue and its bounds from ``bounds``."""
    b = bounds or AlertBounds()
    rules = [*_consumer_alerts(b), *_source_alerts(b), *_spark_alerts(b), *_loss_alerts(b)]
    return {"groups": [{"name": "cryptopipe-alerts", "rules": rules}]}
