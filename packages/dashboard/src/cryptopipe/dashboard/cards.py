"""The page's price cards: the latest price, the changes over 1m / 5m / 1h, and a chart of the
history the dashboard keeps by market time (see :mod:`cryptopipe.dashboard.history`)."""

from __future__ import annotations

import time

import altair as alt
import pandas as pd
import redis
import streamlit as st

from cryptopipe.dashboard import sampler
from cryptopipe.dashboard.fmt import fmt_move, fmt_price, fmt_span, fmt_time
from cryptopipe.dashboard.history import KEEP_S, WINDOWS, MarketHistory
from cryptopipe.dashboard.prices import PriceCard, load_prices
from cryptopipe.dashboard.settings import DashboardSettings
from cryptopipe.schemas import RedisSettings
from cryptopipe.store.prices import PriceStore

CARDS_PER_ROW = 4
UP_COLOUR = "green"
DOWN_COLOUR = "red"


@st.cache_resource(show_spinner=False, max_entries=4)
def market_history(url: str, key_prefix: str) -> MarketHistory:
    """One history per Redis and key prefix for the whole server: every session sees the same (the
    four most recent only, so a long-lived server pointed at run after run stays bounded)."""
    return MarketHistory()


def page_history(url: str, key_prefix: str) -> tuple[MarketHistory, str]:
    """The server's history when its sampler runs, else this page's own; and how it is kept."""
    kept = sampler.running()
    history = kept if kept is not None else market_history(url, key_prefix)
    since = fmt_time(history.started_us, date=False)[:8]
    if kept is not None:
        return history, f"kept by this dashboard since it started at {since} UTC"
    return (
        history,
        f"kept while a page was open, since {since} UTC (`cryptopipe dashboard` keeps it from its start)",
    )


def changes_line(card: PriceCard) -> str:
    """``1m :green[▲ +0.120%] · 5m :red[▼ -0.300%] · 1h —``: each window, coloured by direction."""
    parts = []
    for change in card.changes:
        if change.pct is None:
            parts.append(f"{change.window} —")
            continue
        colour = UP_COLOUR if change.pct > 0 else DOWN_COLOUR if change.pct < 0 else "gray"
        parts.append(f"{change.window} :{colour}[{fmt_move(change.pct)}]")
    return " · ".join(parts)


def clock_note(settings: DashboardSettings) -> str:
    """What a trade time on this page is: the exchange's, or the replay's re-stamped or recorded one."""
    if settings.source == "replay":
        return {"live": "replay, re-stamped to now", "original": "replay, recorded time"}.get(
            settings.replay_clock, "replay"
        )
    return "exchange time" if settings.source == "binance" else ""


def _chart(card: PriceCard) -> alt.Chart:
    frame = pd.DataFrame(
        {
            "time": pd.to_datetime([t for t, _ in card.chart], unit="us", utc=True),
            "price": [p for _, p in card.chart],
        }
    )
    chart: alt.Chart = (
        alt.Chart(frame)
        .mark_line(interpolate="step-after", strokeWidth=1.5)
        .encode(
            x=alt.X("time:T", title=None, axis=alt.Axis(format="%H:%M:%S", labelAngle=0, tickCount=5)),
            y=alt.Y("price:Q", title=None, scale=alt.Scale(zero=False)),
            tooltip=[alt.Tooltip("time:T", format="%H:%M:%S"), "price:Q"],
        )
        .properties(height=150)
    )
    return chart


def draw_card(card: PriceCard, settings: DashboardSettings) -> None:
    with st.container(border=True):
        label = f"{card.symbol} · STALE" if card.stale and card.price is not None else card.symbol
        st.metric(label, fmt_price(card.price))
        if card.price is None:
            st.info("No trades yet for this symbol.")
            return
        kept = f" ({fmt_span(card.kept_s)} kept)" if card.kept_s < WINDOWS[-1][1] else ""
        st.markdown(changes_line(card) + kept)
        note = clock_note(settings)
        age = "" if card.age_s is None else f" · received {max(card.age_s, 0):.1f} s ago"
        st.caption(f"last trade {fmt_time(card.trade_time_us)}{f' ({note})' if note else ''}{age}")
        if card.stale:
            quiet = "never" if card.age_s is None else f"{card.age_s:.0f} s"
            st.warning(f"Stale: no trade received for {quiet} (threshold {settings.stale_seconds:g} s).")
        if len(card.chart) >= 2:
            st.altair_chart(_chart(card))


def history_caption(cards: list[PriceCard], settings: DashboardSettings, kept: str) -> str:
    """What the charts and changes are drawn from, said once under the cards."""
    text = (
        f"Charts and changes: the last price in each second of trade time, {kept} "
        f"(up to {KEEP_S // 3600} h; Redis holds only the newest "
        f"{settings.history_points:,} trades per symbol). A change compares the last price with the price "
        "at the window's start; — while less than the window is kept. Charts show the newest hour."
    )
    gaps = sum(card.gaps for card in cards)
    if gaps:
        text += (
            f" {gaps} read(s) may have missed trades: more arrived between two refreshes than Redis holds."
        )
    return text


def prices_section(client: redis.Redis, settings: DashboardSettings, redis_settings: RedisSettings) -> None:
    """Raises ``redis.RedisError`` when Redis cannot be read (the page shows which and why)."""
    history, kept = page_history(redis_settings.url.get_secret_value(), redis_settings.key_prefix)
    cards = load_prices(
        PriceStore(client, redis_settings.key_prefix),
        settings.symbols,
        now_us=time.time_ns() // 1000,
        stale_seconds=settings.stale_seconds,
        history_points=settings.history_points,
        history=history,
    )
    if not cards:
        st.info("No prices in Redis yet. Is the pipeline running (`cryptopipe up`)?")
        return
    per_row = min(CARDS_PER_ROW, len(cards))
    for start in range(0, len(cards), per_row):
        columns = st.columns(per_row)
        for column, card in zip(columns, cards[start : start + per_row], strict=False):
            with column:
                draw_card(card, settings)
    st.caption(history_caption(cards, settings, kept))
