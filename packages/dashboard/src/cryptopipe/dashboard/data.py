"""What the page shows, assembled from Redis and the metrics, without any Streamlit.

Every function here returns plain dataclasses, so the figures can be tested against a real Redis
and a real metrics endpoint without a browser; ``cryptopipe.dashboard.page`` only draws them.
Alerts come through the store package's read API (``AlertStore``; prices: ``cryptopipe.dashboard.prices``);
health figures come from where they live: the services' /metrics endpoints, read with
:class:`cryptopipe.observability.Scrape`, or Prometheus' HTTP API when ``PROMETHEUS_URL`` is set.
"""

from __future__ import annotations

import logging
import math
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import redis

from cryptopipe.observability import Scrape
from cryptopipe.observability import metrics as m
from cryptopipe.observability.prometheus import PrometheusError, instant_query
from cryptopipe.observability.query import series_name
from cryptopipe.schemas import Alert, redact_url
from cryptopipe.store.alerts import AlertStore
from cryptopipe.store.loop import DEFAULT_STALL_TIMEOUT_S

logger = logging.getLogger(__name__)

# --- metrics read by the health panel: names taken from the catalogue, never typed again ---
E2E = series_name(m.E2E_LATENCY)
SYSTEM = series_name(m.SYSTEM_LATENCY)
NETWORK = series_name(m.NETWORK_LATENCY)
NETWORK_CORRECTED = series_name(m.NETWORK_LATENCY_CORRECTED)
ALERT_LATENCY = series_name(m.ALERT_LATENCY)
THROUGHPUT = series_name(m.CONSUMER_THROUGHPUT)
CONSUMER_LAG = series_name(m.CONSUMER_LAG)
SINCE_PROGRESS = series_name(m.CONSUMER_SECONDS_SINCE_PROGRESS)
CLOCK_OFFSET = series_name(m.CLOCK_OFFSET)
SPARK_BATCH = series_name(m.ALERTING_BATCH_DURATION)
SPARK_LAG = series_name(m.ALERTING_LAG)
MEMORY = series_name(m.PROCESS_MEMORY)
#: Rows of the latency table: label -> seconds histogram.
LATENCIES: tuple[tuple[str, str], ...] = (
    ("E2E", E2E),
    ("System", SYSTEM),
    ("Network", NETWORK),
    ("Network (skew-corrected)", NETWORK_CORRECTED),
    ("Alert", ALERT_LATENCY),
)
PERCENTILES: tuple[tuple[str, float], ...] = (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))


# --- Redis -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Problem:
    """Something the page could not read: what, why, and what the user can do about it."""

    what: str
    detail: str
    fix: str

    def message(self) -> str:
        return f"**{self.what}** — {self.detail}\n\n{self.fix}"


def redis_problem(exc: redis.RedisError, url: str, *, secret: str = "") -> Problem:
    """A message for a failed Redis call that names the server and says how to fix it."""
    shown = redact_url(url)
    detail = str(exc) or type(exc).__name__
    if secret:
        detail = detail.replace(secret, "***")
    if isinstance(exc, redis.AuthenticationError | redis.exceptions.AuthenticationWrongNumberOfArgsError):
        return Problem(
            f"Redis at {shown} refused the credentials",
            detail,
            "Check the password in REDIS_URL (redis://:PASSWORD@host:port/0).",
        )
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
        return Problem(
            f"Redis at {shown} is unreachable",
            detail,
            "Start Redis (`cryptopipe up` starts one) or point REDIS_URL at a running server. "
            "This page retries on every refresh and recovers by itself when Redis is back.",
        )
    return Problem(f"Redis at {shown} returned an error", detail, "See the dashboard's log for details.")


NO_REDIS_URL = Problem(
    "REDIS_URL is not set",
    "the dashboard does not know which Redis holds the prices and alerts.",
    "Start it with `cryptopipe up` (which passes the URL), or set REDIS_URL=redis://host:port/0.",
)


# --- alerts ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AlertFeed:
    alerts: tuple[Alert, ...]
    counts: dict[str, int]
    symbols: tuple[str, ...]
    rules: tuple[str, ...]


def load_alerts(store: AlertStore, limit: int) -> list[Alert]:
    """The newest ``limit`` alerts, newest first by the time they were raised."""
    alerts = store.recent(limit)
    return sorted(alerts, key=lambda a: a.raised_time_us, reverse=True)


def filter_alerts(
    alerts: Iterable[Alert],
    *,
    symbols: Iterable[str] = (),
    sides: Iterable[str] = (),
    rules: Iterable[str] = (),
) -> list[Alert]:
    """Alerts matching every non-empty filter (an empty filter matches everything)."""
    wanted_symbols, wanted_sides, wanted_rules = set(symbols), set(sides), set(rules)
    return [
        a
        for a in alerts
        if (not wanted_symbols or a.symbol in wanted_symbols)
        and (not wanted_sides or a.side in wanted_sides)
        and (not wanted_rules or a.rule in wanted_rules)
    ]


def alert_feed(alerts: Sequence[Alert], **filters: Iterable[str]) -> AlertFeed:
    """The filtered feed, the per-symbol counts of what is shown, and the filter choices."""
    shown = filter_alerts(alerts, **filters)
    counts = Counter(a.symbol for a in shown)
    return AlertFeed(
        alerts=tuple(shown),
        counts=dict(sorted(counts.items())),
        symbols=tuple(sorted({a.symbol for a in alerts})),
        rules=tuple(sorted({a.rule for a in alerts})),
    )


# --- pipeline health -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ConsumerProgress:
    """One consumer's stall clock: seconds records have waited with none written (0: fine)."""

    consumer: str
    seconds_since_progress: float
    #: The consumers' own stall timeout (their default): from here on they count it as a stall.
    stall_after_s: float = DEFAULT_STALL_TIMEOUT_S

    @property
    def stalled(self) -> bool:
        return self.seconds_since_progress >= self.stall_after_s

    def status(self) -> str:
        """``OK``, or ``stalled for N s``."""
        return f"stalled for {self.seconds_since_progress:,.0f} s" if self.stalled else "OK"

    def warning(self) -> str:
        """The health panel's warning for a stalled consumer: what it means and what to do."""
        return (
            f"**{self.consumer} consumer {self.status()}** — records are waiting in Kafka and none has "
            "been written to Redis since. It recovers by itself where it can (seeks back, then recreates "
            "its Kafka consumer); if this stays, check Redis and the broker."
        )


def consumer_progress(rows: Iterable[tuple[str, float]]) -> tuple[ConsumerProgress, ...]:
    """One entry per consumer (worst value if several series), sorted by name; NaN is skipped."""
    worst: dict[str, float] = {}
    for consumer, value in rows:
        if math.isnan(value):
            continue
        worst[consumer] = max(value, worst.get(consumer, 0.0))
    return tuple(ConsumerProgress(name, seconds) for name, seconds in sorted(worst.items()))


@dataclass(frozen=True, slots=True)
class Health:
    """Figures for the health panel. None means "not exported (yet)": shown as n/a."""

    source: str
    #: LATENCIES label ("E2E", "System", ...) -> {"p50", "p95", "p99"} in milliseconds.
    latency_ms: dict[str, dict[str, float | None]]
    throughput: float | None = None
    lag: float | None = None
    #: Prices records the Spark alerting query has not read yet (all partitions).
    spark_lag: float | None = None
    spark_batch_ms: dict[str, float | None] = field(default_factory=dict)
    #: reference (e.g. "binance") -> offset in milliseconds (reference clock minus local).
    clock_offset_ms: dict[str, float] = field(default_factory=dict)
    runtime: dict[str, str] = field(default_factory=dict)
    problems: tuple[Problem, ...] = ()
    #: Per consumer that exports its stall clock (none running: empty).
    consumers: tuple[ConsumerProgress, ...] = ()
    #: component -> resident memory in MB (its processes and their children), largest first.
    memory_mb: dict[str, float] = field(default_factory=dict)

    @property
    def stalled(self) -> tuple[ConsumerProgress, ...]:
        return tuple(c for c in self.consumers if c.stalled)


def _present(scrape: Scrape, name: str) -> bool:
    return bool(scrape.samples(name)) or bool(scrape.samples(name + "_bucket"))


def _health(
    source: str,
    percentiles: Callable[[str], dict[str, float | None]],
    *,
    throughput: float | None,
    lag: float | None,
    spark_lag: float | None,
    offsets: dict[str, float],
    consumers: tuple[ConsumerProgress, ...],
    runtime: dict[str, str],
    memory: Iterable[tuple[str, float]] = (),
    problems: Sequence[Problem] = (),
) -> Health:
    """The health figures, whichever source they come from; ``percentiles`` reads one histogram's."""
    spark = percentiles(SPARK_BATCH)
    return Health(
        source=source,
        latency_ms={label: percentiles(name) for label, name in LATENCIES},
        throughput=throughput,
        lag=lag,
        spark_lag=spark_lag,
        spark_batch_ms={} if all(v is None for v in spark.values()) else spark,
        clock_offset_ms=offsets,
        runtime=dict(runtime),
        problems=tuple(problems),
        consumers=consumers,
        memory_mb=memory_by_component(memory),
    )


def memory_by_component(rows: Iterable[tuple[str, float]]) -> dict[str, float]:
    """Resident memory per component in MB (a component's series summed), largest first; NaN skipped."""
    total: dict[str, float] = {}
    for component, value in rows:
        if not math.isnan(value):
            total[component] = total.get(component, 0.0) + value
    ranked = sorted(total.items(), key=lambda item: -item[1])
    return {name: round(value / 1e6, 1) for name, value in ranked}


def health_from_scrape(
    scrape: Scrape, *, source: str, runtime: dict[str, str], problems: Sequence[Problem] = ()
) -> Health:
    """Health figures from a scrape of the services' endpoints (histograms since service start)."""
    throughput = (
        scrape.total(THROUGHPUT, consumer="prices") if scrape.samples(THROUGHPUT, consumer="prices") else None
    )
    return _health(
        source,
        scrape.percentiles_ms,
        throughput=throughput,
        lag=scrape.total(CONSUMER_LAG) if _present(scrape, CONSUMER_LAG) else None,
        spark_lag=scrape.total(SPARK_LAG) if _present(scrape, SPARK_LAG) else None,
        offsets={
            s.labels.get("reference", "?"): round(s.value * 1000, 3)
            for s in scrape.samples(CLOCK_OFFSET)
            if not math.isnan(s.value)
        },
        consumers=consumer_progress(
            (s.labels.get("consumer", "?"), s.value) for s in scrape.samples(SINCE_PROGRESS)
        ),
        runtime=runtime,
        memory=((s.labels.get("component", "?"), s.value) for s in scrape.samples(MEMORY)),
        problems=problems,
    )


def fetch_scrape(urls: Sequence[str], timeout: float) -> tuple[Scrape, list[Problem]]:
    """Scrape each endpoint on its own, so one service being down hides only its own figures."""
    texts: list[str] = []
    problems: list[Problem] = []
    for url in urls:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                texts.append(response.read().decode("utf-8"))
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            problems.append(
                Problem(
                    f"Metrics endpoint {redact_url(url)} is unreachable",
                    str(reason),
                    "Is the service running? `cryptopipe up` starts them all; check "
                    "DASHBOARD_METRICS_URLS. This panel recovers by itself when the endpoint answers.",
                )
            )
    return Scrape.from_text(*texts), problems


def _number(series: list[tuple[dict[str, str], float]]) -> float | None:
    values = [v for _, v in series if not math.isnan(v)]
    return sum(values) if values else None


def health_from_prometheus(base_url: str, *, window: str, timeout: float, runtime: dict[str, str]) -> Health:
    """Health figures from Prometheus: the same metrics, percentiles over the last ``window``.

    Raises :class:`PrometheusError` when Prometheus cannot be queried.
    """

    def percentiles(histogram: str) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for label, q in PERCENTILES:
            value = _number(
                instant_query(
                    base_url,
                    f"histogram_quantile({q}, sum by (le) (rate({histogram}_bucket[{window}])))",
                    timeout,
                )
            )
            out[label] = None if value is None else round(value * 1000, 3)
        return out

    return _health(
        f"Prometheus {redact_url(base_url)} (percentiles over the last {window})",
        percentiles,
        throughput=_number(instant_query(base_url, f'sum({THROUGHPUT}{{consumer="prices"}})', timeout)),
        lag=_number(instant_query(base_url, f"sum({CONSUMER_LAG})", timeout)),
        spark_lag=_number(instant_query(base_url, f"sum({SPARK_LAG})", timeout)),
        offsets={
            labels.get("reference", "?"): round(value * 1000, 3)
            for labels, value in instant_query(base_url, CLOCK_OFFSET, timeout)
            if not math.isnan(value)
        },
        consumers=consumer_progress(
            (labels.get("consumer", "?"), value)
            for labels, value in instant_query(base_url, f"max by (consumer) ({SINCE_PROGRESS})", timeout)
        ),
        runtime=runtime,
        memory=(
            (labels.get("component", "?"), value)
            for labels, value in instant_query(base_url, f"sum by (component) ({MEMORY})", timeout)
        ),
    )


NO_METRICS = Problem(
    "No metrics configured",
    "neither PROMETHEUS_URL nor DASHBOARD_METRICS_URLS is set, so there are no health figures to show.",
    "Start the dashboard with `cryptopipe up` (which passes the services' endpoints), or set "
    "DASHBOARD_METRICS_URLS=http://127.0.0.1:PORT/metrics,... or PROMETHEUS_URL=http://127.0.0.1:9090.",
)


def load_health(
    *,
    prometheus_url: str,
    metrics_urls: Sequence[str],
    window: str,
    timeout: float,
    runtime: dict[str, str],
) -> Health:
    """Health from Prometheus when configured (it takes precedence), else from the endpoints."""
    empty = {label: dict.fromkeys(("p50", "p95", "p99")) for label, _ in LATENCIES}
    if prometheus_url:
        try:
            return health_from_prometheus(prometheus_url, window=window, timeout=timeout, runtime=runtime)
        except PrometheusError as exc:
            problem = Problem(
                f"Prometheus at {redact_url(prometheus_url)} is unreachable or failing",
                str(exc),
                "Start Prometheus or fix PROMETHEUS_URL (unset it to read the services' "
                "DASHBOARD_METRICS_URLS directly). This panel recovers by itself.",
            )
            return Health(
                source=f"Prometheus {redact_url(prometheus_url)}",
                latency_ms=empty,
                runtime=dict(runtime),
                problems=(problem,),
            )
    if not metrics_urls:
        return Health(
            source="nothing configured", latency_ms=empty, runtime=dict(runtime), problems=(NO_METRICS,)
        )
    scrape, problems = fetch_scrape(metrics_urls, timeout)
    count = len(metrics_urls)
    source = f"{count} metrics endpoint{'s' if count != 1 else ''} (percentiles since each service started)"
    return health_from_scrape(scrape, source=source, runtime=runtime, problems=problems)
