"""The order-book panels' figures, without any Streamlit: each symbol's top of book from Redis, its
cumulative depth, its spread over time and its health.

Books come through the store's read API (:class:`~cryptopipe.store.book_store.BookStore`). The
spread over time is kept by the dashboard like the prices' history (a
:class:`~cryptopipe.dashboard.history.MarketHistory` of spread_bps by market time), since Redis
holds only each book's newest state. Health figures come from the same places as the health panel's
(:func:`cryptopipe.dashboard.data.fetch_scrape` over the services' /metrics, or Prometheus when
``PROMETHEUS_URL`` is set): ingest's resyncs and the books consumer's breaks, per symbol. A symbol
beyond a service's METRICS_SYMBOL_LIMIT has no series of its own there (it counts under
``symbol="other"``): its figures from that service are not available.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from cryptopipe.dashboard.data import fetch_scrape
from cryptopipe.dashboard.history import MarketHistory, Point, thin
from cryptopipe.observability import metrics as m
from cryptopipe.observability.prometheus import PrometheusError, instant_query
from cryptopipe.observability.query import series_name
from cryptopipe.schemas import redact_url
from cryptopipe.store.book_store import BookStore, BookView

RESYNCS = series_name(m.BOOK_RESYNCS)
BREAKS = series_name(m.BOOK_BREAKS)
BOOKS = series_name(m.BOOKS)
#: What the panels read, by series: one instant query each (Prometheus) or one scrape for all.
BOOK_SERIES = (RESYNCS, BREAKS, BOOKS)
#: Books drawn when the page opens (the first ones in DASHBOARD_SYMBOLS order); the rest on demand.
DEFAULT_BOOKS = 4

Rows = list[tuple[dict[str, str], float]]


@dataclass(frozen=True, slots=True)
class BookMetrics:
    """The book series as read once, by series name; ``source`` None when none could be read."""

    rows: Mapping[str, Rows] = field(default_factory=dict)
    source: str | None = None

    def by(self, series: str, label: str, **match: str) -> dict[str, float]:
        """``series`` summed per value of ``label`` over the rows matching ``match`` (NaN skipped)."""
        out: dict[str, float] = {}
        for labels, value in self.rows.get(series, []):
            if math.isnan(value) or any(labels.get(k) != v for k, v in match.items()):
                continue
            key = labels.get(label, "")
            out[key] = out.get(key, 0.0) + value
        return out

    def of_symbol(self, series: str, label: str, symbol: str) -> dict[str, float] | None:
        """:meth:`by` for one symbol's rows; None when it has none while ``other`` has some: the
        symbol was folded into ``other`` (METRICS_SYMBOL_LIMIT), so its own figures are unknown.
        Both services prime their per-symbol series at 0, so a symbol they met has rows."""
        own = self.by(series, label, symbol=symbol)
        if (
            not own
            and symbol != m.OTHER
            and any(labels.get("symbol") == m.OTHER for labels, _ in self.rows.get(series, []))
        ):
            return None
        return own

    def books_by_state(self) -> dict[str, float]:
        """Ingest's books live and syncing (empty when ingest's metrics are not read)."""
        return self.by(BOOKS, "state")


def load_book_metrics(*, prometheus_url: str, metrics_urls: Sequence[str], timeout: float) -> BookMetrics:
    """The book series from Prometheus when configured, else from the services' endpoints.

    A source that cannot be read gives empty metrics: the health panel already says which and why.
    """
    if prometheus_url:
        try:
            rows = {name: instant_query(prometheus_url, name, timeout) for name in BOOK_SERIES}
        except PrometheusError:
            return BookMetrics()
        return BookMetrics(rows, f"Prometheus {redact_url(prometheus_url)}")
    if not metrics_urls:
        return BookMetrics()
    scrape, problems = fetch_scrape(metrics_urls, timeout)
    if len(problems) == len(metrics_urls):
        return BookMetrics()
    rows = {name: [(s.labels, s.value) for s in scrape.samples(name)] for name in BOOK_SERIES}
    return BookMetrics(rows, "the services' /metrics endpoints")


@dataclass(frozen=True, slots=True)
class BookHealth:
    """One symbol's sync record since the services started; None: no metrics could be read, or the
    symbol has no series of its own (``folded``)."""

    #: Ingest's resyncs of the live book, by reason (gap, stale_snapshot, crossed, requested).
    resyncs: dict[str, float] | None
    #: The books consumer's breaks (a book given up until the next reset), by reason.
    breaks: dict[str, float] | None
    #: Some figure is None because a service counts the symbol under ``symbol="other"``.
    folded: bool = False

    @property
    def resync_count(self) -> float | None:
        return None if self.resyncs is None else sum(self.resyncs.values())

    @property
    def gaps(self) -> float | None:
        """Holes in the symbol's update ids that broke its live book (each one a resync)."""
        return None if self.resyncs is None else self.resyncs.get("gap", 0.0)

    @property
    def break_count(self) -> float | None:
        return None if self.breaks is None else sum(self.breaks.values())


def book_health(metrics: BookMetrics, symbol: str) -> BookHealth:
    if metrics.source is None:
        return BookHealth(None, None)
    resyncs = metrics.of_symbol(RESYNCS, "reason", symbol)
    breaks = metrics.of_symbol(BREAKS, "reason", symbol)
    return BookHealth(resyncs, breaks, folded=resyncs is None or breaks is None)


Depth = tuple[tuple[str, float, float], ...]


def cumulative_depth(view: BookView) -> Depth:
    """(side, price, quantity at this price or better), best first on each side: the depth chart."""
    rows: list[tuple[str, float, float]] = []
    for side, levels in (("bid", view.bids), ("ask", view.asks)):
        total = Decimal(0)
        for price, quantity in levels:
            total += quantity
            rows.append((side, float(price), float(total)))
    return tuple(rows)


def market_time_us(view: BookView) -> int:
    """The book's time: the exchange's time of its last event, or its snapshot's receive time."""
    return view.event_time_us if view.event_time_us is not None else view.receive_time_us


@dataclass(frozen=True, slots=True)
class BookPanel:
    view: BookView
    depth: Depth
    #: (market_time_us, spread_bps), oldest first: the newest hour at most.
    spreads: tuple[Point, ...]
    #: Seconds since the books consumer wrote this state (Redis' clock against this machine's).
    age_s: float
    health: BookHealth

    def stale(self, after_s: float) -> bool:
        return self.age_s >= after_s


def book_symbols(store: BookStore, symbols: Sequence[str]) -> list[str]:
    """Symbols with a book in Redis: in ``symbols``' order, every one sorted when none is given."""
    held = store.symbols()
    if not symbols:
        return held
    known = set(held)
    return [s for s in symbols if s in known]


def load_book(
    store: BookStore,
    symbol: str,
    *,
    now_us: int,
    spreads: MarketHistory,
    health: BookHealth,
) -> BookPanel | None:
    """``symbol``'s panel, its spread folded into ``spreads``; None when Redis holds no book.

    Raises ``redis.RedisError`` when Redis cannot be read.
    """
    view = store.book(symbol)
    if view is None:
        return None
    point = [] if view.spread_bps is None else [(market_time_us(view), view.spread_bps)]
    kept, _ = spreads.add(symbol, point, full=False)
    return BookPanel(
        view=view,
        depth=cumulative_depth(view),
        spreads=tuple(thin(kept)),
        age_s=(now_us - view.written_time_us) / 1e6,
        health=health,
    )
