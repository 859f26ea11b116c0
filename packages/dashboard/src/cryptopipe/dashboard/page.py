"""The Streamlit page: draws what ``cryptopipe.dashboard.data`` and ``.prices`` assemble.

Each section is a fragment with ``run_every`` (the refresh rate), so it reruns on its own
without rerunning the script or redrawing the other sections. A section that cannot read its
source shows which source failed and how to fix it, and recovers on the next refresh.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import redis
import streamlit as st

from cryptopipe.dashboard import data
from cryptopipe.dashboard.book_panel import books_section
from cryptopipe.dashboard.cards import prices_section
from cryptopipe.dashboard.fmt import DOWN, UP, fmt_move, fmt_price, fmt_time, fmt_window
from cryptopipe.dashboard.health_view import health_section, show_problem
from cryptopipe.dashboard.settings import DashboardSettings
from cryptopipe.schemas import Alert, ConfigError, RedisSettings, load_settings, redact_url
from cryptopipe.store.alerts import AlertStore
from cryptopipe.store.sink import connect_redis

#: The side is a signal, not a direction: its colours stay clear of the green / red of price moves.
SIDE_COLOURS = {"BUY": "#0969da", "SELL": "#8250df"}
UP_COLOUR = "#1a7f37"
DOWN_COLOUR = "#cf222e"


# --- resources -------------------------------------------------------------------------------
@st.cache_resource(show_spinner=False)
def _redis_client(url: str, timeout: float) -> redis.Redis:
    """One client (and connection pool) per Redis for the whole server, shared by every session."""
    client: redis.Redis = connect_redis(url, socket_timeout=timeout)
    return client


def _with_redis(
    redis_settings: RedisSettings, settings: DashboardSettings, draw: Callable[[redis.Redis], None]
) -> None:
    url = redis_settings.url.get_secret_value()
    if not url:
        show_problem(data.NO_REDIS_URL)
        return
    client = _redis_client(url, settings.redis_timeout_seconds)
    try:
        draw(client)
    except redis.RedisError as exc:
        password = client.connection_pool.connection_kwargs.get("password") or ""
        show_problem(data.redis_problem(exc, url, secret=str(password)))


# --- sections ---
COLUMNS = ["Raised", "Symbol", "Side", "Move", "Rule", "Window", "Open → Close", "Kind"]


def alerts_frame(alerts: tuple[Alert, ...]) -> pd.DataFrame:
    """The feed's rows; ``Move`` is the window's price change (``pct_change`` is a fraction) with
    its direction mark, so a BUY on a falling price reads as such."""
    return pd.DataFrame(
        {
            "Raised": [fmt_time(a.raised_time_us) for a in alerts],
            "Symbol": [a.symbol for a in alerts],
            "Side": [a.side for a in alerts],
            "Move": [fmt_move(a.pct_change * 100) for a in alerts],
            "Rule": [a.rule for a in alerts],
            "Window": [fmt_window(a.window_start_us, a.window_end_us) for a in alerts],
            "Open → Close": [f"{fmt_price(a.open)} → {fmt_price(a.close)}" for a in alerts],
            "Kind": [a.kind for a in alerts],
        },
        columns=COLUMNS,
    )


def _side_style(value: Any) -> str:
    colour = SIDE_COLOURS.get(str(value))
    return f"color: {colour}; font-weight: 600" if colour else ""


def _move_style(value: Any) -> str:
    text = str(value)
    colour = UP_COLOUR if text.startswith(UP) else DOWN_COLOUR if text.startswith(DOWN) else None
    return f"color: {colour}; font-weight: 600" if colour else ""


def _remember(key: str, initial: list[str], values: tuple[str, ...]) -> list[str]:
    """A filter's choices: what it started with plus every value seen since, in order of appearance."""
    known: list[str] = st.session_state.setdefault(key, list(initial))
    known += [v for v in values if v not in known]
    return known


def alerts_section(client: redis.Redis, settings: DashboardSettings, redis_settings: RedisSettings) -> None:
    everything = data.load_alerts(AlertStore(client, redis_settings.key_prefix), settings.alerts_limit)
    seen = data.alert_feed(everything)
    known_symbols = _remember("alert_symbols", list(settings.symbols), seen.symbols)
    known_rules = _remember("alert_rules", [], seen.rules)
    left, middle, right = st.columns(3)
    symbols = left.multiselect("Symbol", known_symbols, key="filter_symbol", placeholder="all symbols")
    sides = middle.multiselect("Side", ["BUY", "SELL"], key="filter_side", placeholder="both sides")
    rules = right.multiselect("Rule", known_rules, key="filter_rule", placeholder="all rules")
    feed = data.alert_feed(everything, symbols=symbols, sides=sides, rules=rules)
    if feed.counts:
        columns = st.columns(max(len(feed.counts), 4))
        for column, (symbol, count) in zip(columns, feed.counts.items(), strict=False):
            column.metric(f"{symbol} alerts", count)
    if not feed.alerts:
        st.info("No alerts yet." if not everything else "No alert matches these filters.")
        return
    frame = alerts_frame(feed.alerts)
    st.dataframe(
        frame.style.map(_side_style, subset=["Side"]).map(_move_style, subset=["Move"]),
        hide_index=True,
        height=min(38 + 35 * len(frame), 400),
    )
    st.caption(
        f"Move: the price change over the alert's window ({UP} up, {DOWN} down). Side is the rule's "
        "signal, not the direction: a BUY may follow a fall. Raised: local wall-clock time."
    )


# --- the page --------------------------------------------------------------------------------
def _settings() -> tuple[DashboardSettings, RedisSettings] | None:
    try:
        return load_settings(DashboardSettings), load_settings(RedisSettings)
    except ConfigError as exc:
        lines = []
        for problem in exc.problems:
            variable, _, detail = problem.partition(": ")
            lines.append(f"- `{variable}`: {detail}")
        st.error("**The dashboard's configuration is invalid**\n\n" + "\n".join(lines), icon="⚠️")
        return None


def source_line(settings: DashboardSettings) -> str:
    """What the page shows: the live market, or a replay, and what its trade times mean."""
    if settings.source == "binance":
        return "**Live Binance market**: trade times are the exchange's."
    if settings.source != "replay":
        return "Source not reported (DASHBOARD_SOURCE is set by `cryptopipe up`)."
    what = f" of {settings.replay_data}" if settings.replay_data else ""
    clock = {
        "live": "clock **live**: trade times are re-stamped to now, so recorded data shows today's date",
        "original": "clock **original**: trade times are the recorded ones",
    }.get(settings.replay_clock, "clock not reported")
    return f"**Replay{what}** on the local replay exchange (not the live market) · {clock}."


#: The page's title by source (unreported: neither live nor replay is claimed).
TITLES = {"binance": "cryptopipe — live", "replay": "cryptopipe — replay"}


def main() -> None:
    st.set_page_config(page_title="cryptopipe", page_icon="📈", layout="wide")
    loaded = _settings()
    if loaded is None:
        return
    settings, redis_settings = loaded
    every = settings.refresh_seconds
    url = redis_settings.url.get_secret_value()
    st.title(TITLES.get(settings.source, "cryptopipe"))
    st.markdown(source_line(settings))
    st.caption(
        f"Redis {redact_url(url) if url else '(not set)'} · refreshes every {every:g} s · "
        f"stale after {settings.stale_seconds:g} s without trades"
    )

    @st.fragment(run_every=every)
    def prices() -> None:
        _with_redis(redis_settings, settings, lambda client: prices_section(client, settings, redis_settings))
        st.caption(f"updated {datetime.now(tz=UTC).strftime('%H:%M:%S')} UTC")

    @st.fragment(run_every=every)
    def books() -> None:  # nothing until Redis holds a book; the prices section reports an outage
        if url:
            books_section(_redis_client(url, settings.redis_timeout_seconds), settings, redis_settings)

    @st.fragment(run_every=every)
    def alerts() -> None:
        _with_redis(redis_settings, settings, lambda client: alerts_section(client, settings, redis_settings))

    @st.fragment(run_every=every)
    def health() -> None:
        health_section(settings)

    st.header({"binance": "Live prices", "replay": "Prices (replay)"}.get(settings.source, "Prices"))
    prices()
    books()
    st.header("Alerts")
    alerts()
    st.header("Pipeline health")
    health()
