"""The page's order-book section: per symbol the touch (best bid and ask, spread, mid), a cumulative
depth chart, the spread over time and the book's health (figures from :mod:`cryptopipe.dashboard.books`).

Drawn only when Redis holds a book (``cryptopipe up --depth 100ms``); the charts carry
``usermeta`` = {"chart", "symbol"} so a test can find each one's data in what the browser receives.
"""

from __future__ import annotations

import logging
import time
from typing import Literal

import altair as alt
import pandas as pd
import redis
import streamlit as st

from cryptopipe.dashboard.books import (
    DEFAULT_BOOKS,
    BookHealth,
    BookMetrics,
    BookPanel,
    book_health,
    book_symbols,
    load_book,
    load_book_metrics,
)
from cryptopipe.dashboard.fmt import fmt_price, fmt_time
from cryptopipe.dashboard.history import MarketHistory
from cryptopipe.dashboard.settings import DashboardSettings
from cryptopipe.schemas import RedisSettings
from cryptopipe.store.book_store import BookStore, BookView

BID_COLOUR = "#1a7f37"
ASK_COLOUR = "#cf222e"
#: Each side drawn as a step: a bid's depth holds from its price up to the next, an ask's from its
#: price down to the previous, so the area at any price is the quantity at that price or better.
STEPS: tuple[tuple[str, Literal["step-before", "step-after"]], ...] = (
    ("bid", "step-before"),
    ("ask", "step-after"),
)
CHART_HEIGHT = 220
#: Session key: this page has shown a book (so an outage is worth a line in its place).
SHOWN = "books_shown"

logger = logging.getLogger(__name__)


@st.cache_resource(show_spinner=False, max_entries=4)
def spread_history(url: str, key_prefix: str) -> MarketHistory:
    """Every book's spread as the pages saw it, one per Redis and key prefix for the whole server."""
    return MarketHistory()


def depth_chart(panel: BookPanel) -> alt.LayerChart:
    frame = pd.DataFrame(list(panel.depth), columns=["side", "price", "cumulative"])
    scale = alt.Scale(zero=False)
    if panel.view.mid is not None and len(frame):
        # Centred on the mid, so the two sides' reach compares at a glance.
        mid = float(panel.view.mid)
        reach = float((frame["price"] - mid).abs().max())
        scale = alt.Scale(domain=[mid - reach, mid + reach], zero=False)
    base = alt.Chart(frame).encode(
        x=alt.X("price:Q", title="price", scale=scale, axis=alt.Axis(format=",")),
        y=alt.Y("cumulative:Q", title="cumulative quantity"),
        color=alt.Color(
            "side:N", scale=alt.Scale(domain=["bid", "ask"], range=[BID_COLOUR, ASK_COLOUR]), legend=None
        ),
        tooltip=["side:N", alt.Tooltip("price:Q", format=","), "cumulative:Q"],
    )
    layers = [
        base.transform_filter(alt.datum.side == side).mark_area(interpolate=steps, opacity=0.3, line=True)
        for side, steps in STEPS
    ]
    chart: alt.LayerChart = alt.LayerChart(layer=layers).properties(
        height=CHART_HEIGHT, usermeta={"chart": "depth", "symbol": panel.view.symbol}
    )
    return chart


def spread_chart(panel: BookPanel) -> alt.Chart:
    frame = pd.DataFrame(list(panel.spreads), columns=["time", "spread_bps"])
    frame["time"] = pd.to_datetime(frame["time"], unit="us", utc=True)
    time_axis = alt.Axis(format="%H:%M:%S", labelAngle=0, tickCount=5)
    line = alt.Chart(frame).mark_line(interpolate="step-after", strokeWidth=1.5, point=len(frame) < 30)
    chart: alt.Chart = line.encode(
        x=alt.X("time:T", title=None, axis=time_axis),
        y=alt.Y("spread_bps:Q", title="spread (bps)"),
        tooltip=[alt.Tooltip("time:T", format="%H:%M:%S"), "spread_bps:Q"],
    ).properties(height=CHART_HEIGHT, usermeta={"chart": "spread", "symbol": panel.view.symbol})
    return chart


def _count(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def _reasons(counts: dict[str, float] | None) -> str | None:
    """``gap 2 · crossed 1``: a tile's tooltip (None when there is none)."""
    if not counts:
        return None
    return " · ".join(f"{reason} {n:,.0f}" for reason, n in sorted(counts.items()) if n) or None


def touch_tiles(view: BookView) -> list[tuple[str, str, str | None]]:
    """(label, value, note) of the touch: best bid and ask with their quantity, spread (bps), mid."""
    bid, ask = view.best_bid, view.best_ask
    bps = None if view.spread_bps is None else f"{view.spread_bps:.4g} bps"
    return [
        ("Best bid", fmt_price(bid[0] if bid else None), f"qty {fmt_price(bid[1])}" if bid else None),
        ("Best ask", fmt_price(ask[0] if ask else None), f"qty {fmt_price(ask[1])}" if ask else None),
        ("Spread", fmt_price(view.spread), bps),
        ("Mid", fmt_price(view.mid), None),
    ]


#: The tooltip of a figure the service counts under symbol="other" only.
FOLDED_NOTE = 'beyond the service\'s METRICS_SYMBOL_LIMIT: counted under symbol="other", not per symbol'


def health_tiles(health: BookHealth, age_s: float) -> list[tuple[str, str, str | None]]:
    """(label, value, tooltip) of a book's health: last update age, resyncs, gaps, breaks."""
    resyncs_note = FOLDED_NOTE if health.folded and health.resyncs is None else None
    breaks_note = FOLDED_NOTE if health.folded and health.breaks is None else None
    return [
        ("Last update", f"{max(age_s, 0.0):,.1f} s ago", "written to Redis by the books consumer"),
        ("Resyncs", _count(health.resync_count), resyncs_note or _reasons(health.resyncs)),
        ("Gaps", _count(health.gaps), resyncs_note or "holes in the update ids that broke the live book"),
        ("Breaks (consumer)", _count(health.break_count), breaks_note or _reasons(health.breaks)),
    ]


def _tiles(tiles: list[tuple[str, str, str | None]], *, notes_as_delta: bool) -> None:
    for column, (label, value, note) in zip(st.columns(len(tiles)), tiles, strict=True):
        if notes_as_delta:
            column.metric(label, value, delta=note, delta_color="off", delta_arrow="off")
        else:
            column.metric(label, value, help=note)


def draw_book(panel: BookPanel, settings: DashboardSettings) -> None:
    view = panel.view
    with st.container(border=True):
        st.subheader(view.symbol)
        st.caption(
            f"update id {view.update_id} · epoch {view.epoch} · event time {fmt_time(view.event_time_us)} · "
            f"written {fmt_time(view.written_time_us)}"
        )
        _tiles(touch_tiles(view), notes_as_delta=True)
        left, right = st.columns(2)
        with left:
            st.altair_chart(depth_chart(panel))
        with right:
            st.altair_chart(spread_chart(panel))
        _tiles(health_tiles(panel.health, panel.age_s), notes_as_delta=False)
        if panel.stale(settings.stale_seconds):
            st.warning(
                f"Stale: no change written for {panel.age_s:,.0f} s "
                f"(threshold {settings.stale_seconds:g} s): a quiet book, or ingest or the "
                "books consumer is not keeping up (see Pipeline health)."
            )


def section_caption(metrics: BookMetrics, spreads: MarketHistory) -> str:
    since = fmt_time(spreads.started_us, date=False)[:8]
    text = (
        "Depth: quantity at each price or better over the levels Redis holds (bids green, asks red). "
        "Spread: the last one in each second of the book's event time, kept while a page showed the book "
        f"(since {since} UTC). "
    )
    if metrics.source is None:
        return text + "Resyncs, gaps and breaks: n/a, no metrics could be read (see Pipeline health)."
    text += f"Resyncs (ingest) and breaks (books consumer) since each service started, from {metrics.source}."
    states = metrics.books_by_state()
    if states:
        text += f" Ingest: {states.get('live', 0):,.0f} books live, {states.get('syncing', 0):,.0f} syncing."
    return text


def books_section(client: redis.Redis, settings: DashboardSettings, redis_settings: RedisSettings) -> None:
    """Nothing until Redis holds a book. While Redis cannot be read, a book shown before says so in one
    line (the prices section reports the outage and how to fix it)."""
    try:
        _draw_books(BookStore(client, redis_settings.key_prefix), settings, redis_settings)
    except redis.RedisError as exc:
        logger.debug("order books: Redis unreadable (%s)", exc)
        if st.session_state.get(SHOWN):
            st.header("Order books")
            st.warning("Order books: Redis cannot be read (see the prices section); retrying.", icon="⚠️")


def _draw_books(store: BookStore, settings: DashboardSettings, redis_settings: RedisSettings) -> None:
    available = book_symbols(store, settings.symbols)
    if not available:
        return
    st.session_state[SHOWN] = True
    st.header("Order books")
    chosen = st.multiselect(
        "Books", available, default=available[:DEFAULT_BOOKS], key="book_symbols", placeholder="choose books"
    )
    metrics = load_book_metrics(
        prometheus_url=settings.prometheus_url,
        metrics_urls=settings.metrics_urls,
        timeout=settings.metrics_timeout_seconds,
    )
    spreads = spread_history(redis_settings.url.get_secret_value(), redis_settings.key_prefix)
    now_us = time.time_ns() // 1000
    for symbol in chosen:
        panel = load_book(store, symbol, now_us=now_us, spreads=spreads, health=book_health(metrics, symbol))
        if panel is not None:
            draw_book(panel, settings)
    st.caption(section_caption(metrics, spreads))
