"""The order-book panels' figures against a real Redis (books written by the books consumer's own
sink) and a real /metrics endpoint (the catalogue's own metrics, as ingest and the consumer count)."""

from __future__ import annotations

import time
from decimal import Decimal

import redis
from prometheus_client import REGISTRY

from cryptopipe.dashboard.book_panel import health_tiles, touch_tiles
from cryptopipe.dashboard.books import (
    RESYNCS,
    BookHealth,
    book_health,
    book_symbols,
    cumulative_depth,
    load_book,
    load_book_metrics,
)
from cryptopipe.dashboard.history import MarketHistory
from cryptopipe.observability import metrics as m
from cryptopipe.schemas import BookResetRecord, BookUpdateRecord, RedisSettings
from cryptopipe.store.book_store import BookStore
from cryptopipe.store.books import BookSink

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
    before = {r: _value(RESYNCS, symbol=symbol, reason=r) for r in ("gap", "crossed")}
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
