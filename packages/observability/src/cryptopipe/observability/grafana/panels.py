"""The panel vocabulary the dashboards are written in, and the few panels and names they share."""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptopipe.observability.prometheus import WINDOW, histogram_series


@dataclass(frozen=True, slots=True)
class Query:
    expr: str
    legend: str


@dataclass(frozen=True, slots=True)
class Panel:
    title: str
    queries: tuple[Query, ...]
    unit: str = "short"
    description: str = ""
    width: int = 12


@dataclass(frozen=True, slots=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


@dataclass(frozen=True, slots=True)
class Dashboard:
    uid: str
    title: str
    description: str
    rows: tuple[Row, ...]
    tags: tuple[str, ...] = field(default=("cryptopipe",))


def latency(metric: str, title: str, description: str, level: str = "all", by: str = "") -> Panel:
    """Mean, p95 and p99 of a seconds histogram over the recording window."""
    prefix = f"{{{{{by}}}}} " if by else ""
    queries = tuple(
        Query(histogram_series(metric, level, operation), f"{prefix}{operation}")
        for operation in ("mean", "p95", "p99")
    )
    return Panel(title, queries, unit="s", description=description)


def single(title: str, expr: str, legend: str, *, unit: str = "short", description: str = "") -> Panel:
    """A panel of one query."""
    return Panel(title, (Query(expr, legend),), unit=unit, description=description)


def rate(level: str, metric: str) -> str:
    return f"{level}:{metric}:rate{WINDOW}"


E2E = "cryptopipe_e2e_latency_seconds"
SYSTEM = "cryptopipe_system_latency_seconds"
NETWORK = "cryptopipe_network_latency_seconds"
NETWORK_CORRECTED = "cryptopipe_network_latency_corrected_seconds"
PRODUCER_LATENCY = "cryptopipe_kafka_producer_latency_seconds"

#: On both branches' dashboards: the prices and the alerts consumers run the same loop.
CONSUMER_BATCH = latency(
    "cryptopipe_consumer_batch_seconds",
    "Consumer batch time",
    "Decode + Redis write of one batch.",
    level="consumer",
    by="consumer",
)
