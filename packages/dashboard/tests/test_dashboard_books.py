"""The order books: their figures against a real Redis (books written by the books consumer's own
sink) and a real /metrics endpoint (the catalogue's own metrics, counted here as ingest and the books
consumer count them), and the page in a real headless browser (``python -m cryptopipe.dashboard``),
its charts checked on the data the browser received: Streamlit's websocket messages, decoded with
Streamlit's own protobufs.
"""

from __future__ import annotations

import json
import re
import time
from contextlib import ExitStack
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
import redis
from prometheus_client import REGISTRY
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

from cryptopipe.dashboard.book_panel import FOLDED_NOTE, health_tiles, touch_tiles
from cryptopipe.dashboard.books import (
    BREAKS,
    RESYNCS,
    BookHealth,
    BookMetrics,
    book_health,
    book_symbols,
    cumulative_depth,
    load_book,
    load_book_metrics,
)
from cryptopipe.dashboard.history import MarketHistory
from cryptopipe.dashboard.testing import body_text, clipped, page_env, screenshot, start_dashboard
from cryptopipe.infra.testing import eventually
from cryptopipe.observability import metrics as m
from cryptopipe.schemas import BookResetRecord, BookUpdateRecord, RedisSettings
from cryptopipe.store.book_store import BookStore
from cryptopipe.store.books import BookSink
from cryptopipe.store.sink import connect_redis

D = Decimal
EPOCH = 1_723_075_200_000_000


def levels(*pairs: tuple[str, str]) -> tuple[tuple[Decimal, Decimal], ...]:
    return tuple((D(p), D(q)) for p, q in pairs)


def reset(symbol: str, *, event_time_us: int = 1_000_000) -> BookResetRecord:
    return BookResetRecord(
        symbol=symbol,
        epoch=EPOCH,
        reason="initial",
        update_id=100,
        bids=levels(("100.00", "1"), ("99.50", "2"), ("99.00", "0.5")),
        asks=levels(("100.10", "0.25"), ("100.20", "3")),
        event_time_us=event_time_us,
        receive_time_us=event_time_us + 500,
    )


def update(symbol: str, update_id: int, *, bid: str, event_time_us: int) -> BookUpdateRecord:
    """A new best bid at ``bid`` (quantity 4)."""
    return BookUpdateRecord(
        symbol=symbol,
        epoch=EPOCH,
        first_update_id=update_id,
        final_update_id=update_id,
        bids=levels((bid, "4")),
        asks=(),
        event_time_us=event_time_us,
        receive_time_us=event_time_us + 500,
    )


def test_depth_is_cumulative_from_the_touch(redis_client: redis.Redis, redis_settings: RedisSettings) -> None:
    BookSink(redis_client, key_prefix=redis_settings.key_prefix).write([reset("BTCUSDT")])
    view = BookStore(redis_client, redis_settings.key_prefix).book("BTCUSDT")
    assert view is not None
    assert cumulative_depth(view) == (
        ("bid", 100.0, 1.0),
        ("bid", 99.5, 3.0),
        ("bid", 99.0, 3.5),
        ("ask", 100.1, 0.25),
        ("ask", 100.2, 3.25),
    )
    assert touch_tiles(view) == [
        ("Best bid", "100", "qty 1"),
        ("Best ask", "100.1", "qty 0.25"),
        ("Spread", "0.1", "9.995 bps"),
        ("Mid", "100.05", None),
    ]


def test_spread_history_keeps_one_point_a_second_of_event_time(
    redis_client: redis.Redis, redis_settings: RedisSettings
) -> None:
    sink = BookSink(redis_client, key_prefix=redis_settings.key_prefix)
    store = BookStore(redis_client, redis_settings.key_prefix)
    spreads = MarketHistory()
    health = BookHealth(None, None)
    sink.write([reset("ETHUSDT", event_time_us=10_000_000)])
    now_us = time.time_ns() // 1000
    first = load_book(store, "ETHUSDT", now_us=now_us, spreads=spreads, health=health)
    again = load_book(store, "ETHUSDT", now_us=now_us, spreads=spreads, health=health)
    sink.write([update("ETHUSDT", 101, bid="100.05", event_time_us=11_000_000)])
    later = load_book(store, "ETHUSDT", now_us=now_us, spreads=spreads, health=health)
    assert first is not None
    assert again is not None
    assert later is not None
    assert first.spreads == again.spreads == ((10_000_000, first.view.spread_bps),)
    assert later.view.best_bid == (D("100.05"), D("4"))
    assert later.spreads == ((10_000_000, first.view.spread_bps), (11_000_000, later.view.spread_bps))
    assert later.view.spread_bps == 4.99625


def test_book_symbols_follow_the_configured_order(
    redis_client: redis.Redis, redis_settings: RedisSettings
) -> None:
    store = BookStore(redis_client, redis_settings.key_prefix)
    assert book_symbols(store, ()) == []
    BookSink(redis_client, key_prefix=redis_settings.key_prefix).write([reset("ETHUSDT"), reset("BTCUSDT")])
    assert book_symbols(store, ()) == ["BTCUSDT", "ETHUSDT"]
    assert book_symbols(store, ("ETHUSDT", "SOLUSDT", "BTCUSDT")) == ["ETHUSDT", "BTCUSDT"]


def _value(series: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(series, labels) or 0.0


def test_health_counts_resyncs_gaps_and_breaks_from_the_endpoints(metrics_url: str) -> None:
    symbol = "HEALTHUSDT"
    before = {r: _value(RESYNCS, symbol="BTCUSDT", reason=r) for r in ("gap", "crossed")}
    m.BOOK_RESYNCS.labels(symbol=symbol, reason="gap").inc(2)
    m.BOOK_RESYNCS.labels(symbol=symbol, reason="crossed").inc()
    m.BOOK_BREAKS.labels(symbol=symbol, reason="epoch").inc()
    metrics = load_book_metrics(prometheus_url="", metrics_urls=(metrics_url,), timeout=5)
    health = book_health(metrics, symbol)
    assert health.gaps == before["gap"] + 2
    assert health.resync_count == before["gap"] + before["crossed"] + 3
    assert health.breaks is not None
    assert health.breaks["epoch"] >= 1
    assert metrics.source == "the services' /metrics endpoints"


def test_health_is_not_available_without_metrics() -> None:
    for metrics in (
        load_book_metrics(prometheus_url="", metrics_urls=(), timeout=1),
        load_book_metrics(prometheus_url="", metrics_urls=("http://127.0.0.1:9/metrics",), timeout=1),
        load_book_metrics(prometheus_url="http://127.0.0.1:9", metrics_urls=(), timeout=1),
    ):
        assert metrics.source is None
        health = book_health(metrics, "BTCUSDT")
        assert (health.resync_count, health.gaps, health.break_count) == (None, None, None)
        tiles = {label: value for label, value, _ in health_tiles(health, 1.5)}
        assert tiles == {
            "Last update": "1.5 s ago",
            "Resyncs": "n/a",
            "Gaps": "n/a",
            "Breaks (consumer)": "n/a",
        }


def test_a_symbol_folded_into_other_has_no_figures_of_its_own() -> None:
    """Beyond METRICS_SYMBOL_LIMIT a service counts a symbol under symbol="other": its own figures
    are unknown (n/a), not 0; the symbols with series of their own read as before."""
    rows = {
        RESYNCS: [({"symbol": "BTCUSDT", "reason": "gap"}, 1.0), ({"symbol": "other", "reason": "gap"}, 5.0)],
        BREAKS: [
            ({"symbol": "BTCUSDT", "reason": "epoch"}, 0.0),
            ({"symbol": "other", "reason": "gap"}, 2.0),
        ],
    }
    metrics = BookMetrics(rows, "test")
    own = book_health(metrics, "BTCUSDT")
    assert (own.resync_count, own.gaps, own.break_count, own.folded) == (1, 1, 0, False)
    folded = book_health(metrics, "DOGEUSDT")
    assert (folded.resync_count, folded.gaps, folded.break_count, folded.folded) == (None, None, None, True)
    tiles = {label: (value, note) for label, value, note in health_tiles(folded, 1.5)}
    assert tiles["Resyncs"] == tiles["Gaps"] == tiles["Breaks (consumer)"] == ("n/a", FOLDED_NOTE)
    no_other = BookMetrics({RESYNCS: rows[RESYNCS][:1], BREAKS: rows[BREAKS][:1]}, "test")
    unseen = book_health(no_other, "DOGEUSDT")
    assert (unseen.resync_count, unseen.break_count, unseen.folded) == (0, 0, False)


# --- the page in the browser -----------------------------------------------------------------


SYMBOLS = ("BTCUSDT", "ETHUSDT")


class Charts:
    """The newest data of every Vega-Lite chart the page sent, by its ``usermeta`` (chart, symbol)."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self._latest: dict[tuple[str, str], list[dict[str, Any]]] = {}
        page.on("websocket", lambda ws: ws.on("framereceived", self._frame))

    def rows(self, chart: str, symbol: str) -> list[dict[str, Any]]:
        """The newest rows of ``symbol``'s ``chart`` (Playwright delivers the frames received so far
        while it waits for a call into the page)."""
        self.page.evaluate("0")
        return self._latest.get((chart, symbol), [])

    def _frame(self, payload: bytes | str) -> None:
        if isinstance(payload, str):
            return
        message = ForwardMsg.FromString(payload)
        if not message.HasField("delta") or not message.delta.HasField("new_element"):
            return
        element = message.delta.new_element
        if not element.HasField("vega_lite_chart"):
            return
        chart = element.vega_lite_chart
        meta = json.loads(chart.spec).get("usermeta") or {}
        rows: list[dict[str, Any]] = []
        for arrow in [chart.data.data, *(named.data.data for named in chart.datasets)]:
            if arrow:
                rows += pa.ipc.open_stream(arrow).read_all().to_pylist()
        if "chart" in meta:
            self._latest[(meta["chart"], meta["symbol"])] = rows


def book_tile(page: Any, symbol: str, label: str) -> str | None:
    """The value of the tile ``label`` in ``symbol``'s book (None while it is not drawn)."""
    box = page.get_by_test_id("stVerticalBlock").filter(
        has=page.get_by_role("heading", name=symbol, exact=True)
    )
    tiles = box.last.get_by_test_id("stMetric").filter(
        has=page.get_by_test_id("stMetricLabel").filter(has_text=re.compile(rf"^{re.escape(label)}$"))
    )
    values = tiles.get_by_test_id("stMetricValue").all_inner_texts()  # no waiting: a redraw may be under way
    return str(values[0]).strip() if len(values) == 1 else None


@pytest.mark.slow
def test_books_in_the_browser(
    page: Any, redis_settings: RedisSettings, redis_client: Any, metrics_url: str
) -> None:
    client = connect_redis(redis_settings.url.get_secret_value())
    sink = BookSink(client, key_prefix=redis_settings.key_prefix)
    wide = BookResetRecord(
        symbol="ETHUSDT",
        epoch=7,
        reason="initial",
        update_id=500,
        bids=levels(("2500.10", "3"), ("2500.00", "1.5"), ("2499.50", "8")),
        asks=levels(("2500.40", "2"), ("2500.90", "4.25"), ("2501.00", "10")),
        event_time_us=2_000_000,
        receive_time_us=2_000_400,
    )
    sink.write([reset("BTCUSDT"), wide])
    # What ingest and the books consumer count: BTCUSDT's book resynced after two gaps and a crossed book.
    before = {
        r: REGISTRY.get_sample_value(RESYNCS, {"symbol": "BTCUSDT", "reason": r}) or 0
        for r in ("gap", "crossed")
    }
    m.BOOK_RESYNCS.labels(symbol="BTCUSDT", reason="gap").inc(2)
    m.BOOK_RESYNCS.labels(symbol="BTCUSDT", reason="crossed").inc()
    charts = Charts(page)
    with ExitStack() as stack:
        stack.callback(client.close)
        url, _ = start_dashboard(stack, page_env(redis_settings, SYMBOLS, metrics_url))
        page.goto(url)
        touch = {
            ("BTCUSDT", "Best bid"): "100",
            ("BTCUSDT", "Best ask"): "100.1",
            ("BTCUSDT", "Spread"): "0.1",
            ("ETHUSDT", "Best bid"): "2,500.1",
            ("ETHUSDT", "Mid"): "2,500.25",
        }

        def touch_shown() -> bool:
            shown = {key: book_tile(page, *key) for key in touch}
            text = body_text(page)
            assert shown == touch or None in shown.values(), shown  # a tile being redrawn reads None
            return shown == touch and "qty 0.25" in text and "9.995 bps" in text

        eventually(touch_shown, timeout=60, message="the books' touch never showed whole")

        # The book moves: a new best bid, one second of event time later.
        sink.write([update("BTCUSDT", 101, bid="100.05", event_time_us=2_000_000)])
        eventually(
            lambda: book_tile(page, "BTCUSDT", "Best bid") == "100.05",
            timeout=30,
            message="the book never moved",
        )

        def charts_drawn() -> bool:
            spread = charts.rows("spread", "BTCUSDT")
            return len(spread) == 2 and any(row["price"] == 100.05 for row in charts.rows("depth", "BTCUSDT"))

        eventually(charts_drawn, timeout=30, message="the charts never showed the book's move")
        depth = [(r["side"], r["price"], r["cumulative"]) for r in charts.rows("depth", "BTCUSDT")]
        assert depth == [
            ("bid", 100.05, 4.0),
            ("bid", 100.0, 5.0),
            ("bid", 99.5, 7.0),
            ("bid", 99.0, 7.5),
            ("ask", 100.1, 0.25),
            ("ask", 100.2, 3.25),
        ]
        eth = [(r["side"], r["cumulative"]) for r in charts.rows("depth", "ETHUSDT")]
        assert eth == [("bid", 3.0), ("bid", 4.5), ("bid", 12.5), ("ask", 2.0), ("ask", 6.25), ("ask", 16.25)]
        assert [r["spread_bps"] for r in charts.rows("spread", "BTCUSDT")] == [9.995, 4.99625]

        health = {
            ("BTCUSDT", "Resyncs"): f"{before['gap'] + before['crossed'] + 3:,.0f}",
            ("BTCUSDT", "Gaps"): f"{before['gap'] + 2:,.0f}",
            ("ETHUSDT", "Resyncs"): "0",
            ("ETHUSDT", "Gaps"): "0",
        }

        def health_shown() -> bool:
            ages = [book_tile(page, symbol, "Last update") or "" for symbol in SYMBOLS]
            shown = {key: book_tile(page, *key) for key in health}
            return shown == health and all(re.fullmatch(r"[\d,]+\.\d s ago", age) for age in ages)

        eventually(health_shown, timeout=30, message="the books' health never showed")
        assert clipped(page) == []
        page.set_viewport_size({"width": 1100, "height": 1000})
        eventually(lambda: clipped(page) == [], timeout=10, message=f"clipped at 1100 px: {clipped(page)}")
        screenshot(page, "dashboard-books.png")
