"""The Streamlit page: draws what ``cryptopipe.dashboard.data`` assembles.

Each section is a fragment with ``run_every`` (the refresh rate), so it reruns on its own
without rerunning the script or redrawing the other sections. A section that cannot read its
source shows which source failed and how to fix it, and recovers on the next refresh.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import altair as alt
import pandas as pd
import redis
import streamlit as st

from cryptopipe.dashboard import data
from cryptopipe.dashboard.settings import DashboardSettings
from cryptopipe.schemas import Alert, ConfigError, RedisSettings, load_settings, redact_url
from cryptopipe.store.alerts import AlertStore
from cryptopipe.store.prices import PriceStore
from cryptopipe.store.sink import connect_redis

CARDS_PER_ROW = 4
BUY_COLOUR = "#1a7f37"
SELL_COLOUR = "#cf222e"


#: Binance quotes at most 8 decimals; anything finer is noise from a computation.
_PRICE_STEP = Decimal("1e-8")


def fmt_price(price: Decimal | None) -> str:
    """``60,022.61``: thousands separators, no trailing zeros, at most 8 decimals."""
    if price is None:
        return "—"
    if price.as_tuple().exponent < -8:  # type: ignore[operator]
        price = price.quantize(_PRICE_STEP)
    return format(price.normalize(), ",f")


def fmt_time(time_us: int | None, *, date: bool = True) -> str:
    if time_us is None:
        return "—"
    moment = datetime.fromtimestamp(time_us / 1e6, tz=UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f" if date else "%H:%M:%S.%f")[:-3] + " UTC"


def fmt_ms(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.1f} ms" if value < 10_000 else f"{value / 1000:,.2f} s"


def fmt_change(change: data.Change | None, window: str) -> str | None:
    if change is None:
        return None
    span = window if change.complete else f"{change.span_s:.0f} s"
    return f"{change.pct:+.3f}% ({span})"


def fmt_duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:.0f} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:g} s"


def fmt_window(start_us: int, end_us: int) -> str:
    """``12:00:00 to 12:01:00 (1 min)``: wall-clock bounds (UTC) and length of an alert window."""
    start = fmt_time(start_us, date=False)[:8]
    end = fmt_time(end_us, date=False)[:8]
    return f"{start} to {end} ({fmt_duration((end_us - start_us) / 1e6)})"


# --- resources -------------------------------------------------------------------------------
@st.cache_resource(show_spinner=False)
def _redis_client(url: str, timeout: float) -> redis.Redis:
    """One client (and connection pool) per Redis for the whole server, shared by every session."""
    client: redis.Redis = connect_redis(url, socket_timeout=timeout)
    return client


def _show_problem(problem: data.Problem) -> None:
    st.error(problem.message(), icon="⚠️")


def _with_redis(
    redis_settings: RedisSettings, settings: DashboardSettings, draw: Callable[[redis.Redis], None]
) -> None:
    url = redis_settings.url.get_secret_value()
    if not url:
        _show_problem(data.NO_REDIS_URL)
        return
    client = _redis_client(url, settings.redis_timeout_seconds)
    try:
        draw(client)
    except redis.RedisError as exc:
        password = client.connection_pool.connection_kwargs.get("password") or ""
        _show_problem(data.redis_problem(exc, url, secret=str(password)))


# --- sections --------------------------------------------------------------------------------
def _price_chart(card: data.PriceCard) -> alt.Chart:
    frame = pd.DataFrame(
        {
            "time": pd.to_datetime([t for t, _ in card.history], unit="us", utc=True),
            "price": [p for _, p in card.history],
        }
    )
    chart: alt.Chart = (
        alt.Chart(frame)
        .mark_line(interpolate="step-after", strokeWidth=1.5)
        .encode(
            x=alt.X("time:T", title=None, axis=alt.Axis(format="%H:%M:%S", labelAngle=0, tickCount=4)),
            y=alt.Y("price:Q", title=None, scale=alt.Scale(zero=False)),
            tooltip=[alt.Tooltip("time:T", format="%H:%M:%S.%L"), "price:Q"],
        )
        .properties(height=130)
    )
    return chart


def draw_card(card: data.PriceCard, settings: DashboardSettings) -> None:
    with st.container(border=True):
        label = f"{card.symbol} · STALE" if card.stale and card.price is not None else card.symbol
        st.metric(label, fmt_price(card.price), delta=fmt_change(card.change_1m, "1 min"))
        if card.price is None:
            st.info("No trades yet for this symbol.")
            return
        day = fmt_change(card.change_24h, "24 h") or "n/a (history shorter than 24 h)"
        age = "" if card.age_s is None else f" · received {max(card.age_s, 0):.1f} s ago"
        st.caption(f"24 h: {day}  \nlast trade {fmt_time(card.trade_time_us)}{age}")
        if card.stale:
            quiet = "never" if card.age_s is None else f"{card.age_s:.0f} s"
            st.warning(f"Stale: no trade received for {quiet} (threshold {settings.stale_seconds:g} s).")
        if len(card.history) >= 2:
            st.altair_chart(_price_chart(card))


def prices_section(settings: DashboardSettings, redis_settings: RedisSettings) -> None:
    def draw(client: redis.Redis) -> None:
        store = PriceStore(client, redis_settings.key_prefix)
        cards = data.load_prices(
            store,
            settings.symbols,
            now_us=time.time_ns() // 1000,
            stale_seconds=settings.stale_seconds,
            history_points=settings.history_points,
        )
        if not cards:
            st.info("No prices in Redis yet. Is the pipeline running (`cryptopipe up`)?")
            return
        for start in range(0, len(cards), CARDS_PER_ROW):
            columns = st.columns(CARDS_PER_ROW)
            for column, card in zip(columns, cards[start : start + CARDS_PER_ROW], strict=False):
                with column:
                    draw_card(card, settings)

    _with_redis(redis_settings, settings, draw)


def alerts_frame(alerts: tuple[Alert, ...]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "Raised": [fmt_time(a.raised_time_us) for a in alerts],
            "Symbol": [a.symbol for a in alerts],
            "Side": [a.side for a in alerts],
            "Rule": [a.rule for a in alerts],
            "Window": [fmt_window(a.window_start_us, a.window_end_us) for a in alerts],
            "Open → Close": [f"{fmt_price(a.open)} → {fmt_price(a.close)}" for a in alerts],
            "Change %": [round(a.pct_change * 100, 4) for a in alerts],  # pct_change is a fraction
            "Kind": [a.kind for a in alerts],
        },
        columns=["Raised", "Symbol", "Side", "Rule", "Window", "Open → Close", "Change %", "Kind"],
    )


def _side_style(value: Any) -> str:
    colour = {"BUY": BUY_COLOUR, "SELL": SELL_COLOUR}.get(str(value))
    return f"color: white; background-color: {colour}; font-weight: 600" if colour else ""


def alerts_section(settings: DashboardSettings, redis_settings: RedisSettings) -> None:
    def draw(client: redis.Redis) -> None:
        everything = data.load_alerts(AlertStore(client, redis_settings.key_prefix), settings.alerts_limit)
        known_symbols = st.session_state.setdefault("alert_symbols", list(settings.symbols))
        known_rules = st.session_state.setdefault("alert_rules", [])
        for value in data.alert_feed(everything).symbols:
            if value not in known_symbols:
                known_symbols.append(value)
        for value in data.alert_feed(everything).rules:
            if value not in known_rules:
                known_rules.append(value)
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
            frame.style.map(_side_style, subset=["Side"]),
            hide_index=True,
            height=min(38 + 35 * len(frame), 400),
            column_config={"Change %": st.column_config.NumberColumn(format="%+.3f")},
        )

    _with_redis(redis_settings, settings, draw)


def health_section(settings: DashboardSettings) -> None:
    health = data.load_health(
        prometheus_url=settings.prometheus_url,
        metrics_urls=settings.metrics_urls,
        window=settings.prometheus_window,
        timeout=settings.metrics_timeout_seconds,
        runtime=settings.runtime_info,
    )
    for problem in health.problems:
        _show_problem(problem)
    st.caption(f"Source: {health.source}")
    latency = pd.DataFrame(
        {
            label: [fmt_ms(values.get(p)) for p, _ in data.PERCENTILES]
            for label, values in health.latency_ms.items()
        },
        index=[p for p, _ in data.PERCENTILES],
    ).T
    left, right = st.columns([3, 2])
    with left:
        st.table(latency)
        st.caption(
            "E2E: exchange trade time to Redis · System: local receive to Redis · Network: exchange trade "
            "time to local receive · Alert: triggering trade received to alert in Redis."
        )
    with right:
        a, b = st.columns(2)
        a.metric(
            "Throughput (prices)", "n/a" if health.throughput is None else f"{health.throughput:,.1f} msg/s"
        )
        b.metric("Kafka lag", "n/a" if health.lag is None else f"{health.lag:,.0f} records")
        spark = health.spark_batch_ms
        a.metric(
            "Spark micro-batch p50 / p95",
            f"{fmt_ms(spark.get('p50'))} / {fmt_ms(spark.get('p95'))}" if spark else "n/a",
        )
        skew = ", ".join(f"{ref}: {ms:+,.1f} ms" for ref, ms in sorted(health.clock_offset_ms.items()))
        b.metric("Clock skew (reference - local)", skew or "n/a")
        a.metric("Spark query lag", "n/a" if health.spark_lag is None else f"{health.spark_lag:,.0f} records")
    for consumer in health.stalled:
        st.warning(consumer.warning(), icon="⏸️")
    if health.consumers:
        st.markdown("**Consumers** — " + " · ".join(f"{c.consumer}: {c.status()}" for c in health.consumers))
    runtime = health.runtime
    if runtime:
        parts = [f"{name}: `{runtime[name]}`" for name in ("broker", "redis", "spark") if name in runtime]
        parts += [
            f"{name}: `{value}`"
            for name, value in runtime.items()
            if name not in ("broker", "redis", "spark")
        ]
        st.markdown("**Runs on** — " + " · ".join(parts))
    else:
        st.markdown("**Runs on** — not reported (CRYPTOPIPE_RUNTIME_INFO is set by `cryptopipe up`).")


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


def main() -> None:
    st.set_page_config(page_title="cryptopipe", page_icon="📈", layout="wide")
    loaded = _settings()
    if loaded is None:
        return
    settings, redis_settings = loaded
    every = settings.refresh_seconds
    url = redis_settings.url.get_secret_value()
    st.title("cryptopipe — live")
    st.caption(
        f"Redis {redact_url(url) if url else '(not set)'} · refreshes every {every:g} s · "
        f"stale after {settings.stale_seconds:g} s without trades"
    )

    @st.fragment(run_every=every)
    def prices() -> None:
        prices_section(settings, redis_settings)
        st.caption(f"updated {datetime.now(tz=UTC).strftime('%H:%M:%S')} UTC")

    @st.fragment(run_every=every)
    def alerts() -> None:
        alerts_section(settings, redis_settings)

    @st.fragment(run_every=every)
    def health() -> None:
        health_section(settings)

    st.header("Live prices")
    prices()
    st.header("Alerts")
    alerts()
    st.header("Pipeline health")
    health()
