"""The consumers' per-symbol series under METRICS_SYMBOL_LIMIT, against a real Redis: the first
symbols keep their own, the rest count under ``other`` (totals exact), and the gauges of ``other``
mean what the catalogue says: the folded trades' latency share, the worst folded staleness."""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal
from types import SimpleNamespace

import pytest
import redis
from prometheus_client import REGISTRY, generate_latest

from cryptopipe.observability import Scrape
from cryptopipe.observability import metrics as m
from cryptopipe.observability.query import Series
from cryptopipe.schemas import BookResetRecord, RedisSettings
from cryptopipe.store import BookSink, PriceSink
from cryptopipe.store import books as books_module

from .conftest import trade

Limit = Callable[[int], m.SymbolLabels]
SYMBOLS = ("FOLDAUSDT", "FOLDBUSDT", "FOLDCUSDT", "FOLDDUSDT", "FOLDEUSDT")


def _by_symbol(metric: Series, **match: str) -> dict[str, float]:
    scrape = Scrape.from_text(generate_latest(REGISTRY).decode())
    mine = {*SYMBOLS, m.OTHER}
    return {
        s.labels["symbol"]: s.value for s in scrape.samples(metric, **match) if s.labels["symbol"] in mine
    }


def test_prices_of_five_symbols_at_a_limit_of_three(
    symbol_limit: Limit, redis_client: redis.Redis, redis_settings: RedisSettings
) -> None:
    labels = symbol_limit(3)
    sink = PriceSink(redis_client, key_prefix=redis_settings.key_prefix)
    now_us = time.time_ns() // 1000
    # The folded symbols' trades sit 1 s and 3 s behind the exchange: different shares each.
    sent_us = {symbol: now_us - (3_000_000 if symbol == "FOLDEUSDT" else 1_000_000) for symbol in SYMBOLS}
    batch = [
        trade(symbol, trade_id, sent_us[symbol], event_time_us=sent_us[symbol], receive_time_us=now_us)
        for count, symbol in enumerate(SYMBOLS, start=1)
        for trade_id in range(1, count + 1)
    ]
    result = sink.write(batch)

    written = _by_symbol(m.PRICES_WRITTEN)
    assert written == {"FOLDAUSDT": 1, "FOLDBUSDT": 2, "FOLDCUSDT": 3, "other": 4 + 5}
    assert sum(written.values()) == result.written == len(batch)
    latencies = _by_symbol("cryptopipe_e2e_latency_seconds_count")
    assert latencies == written
    system_us = [result.written_time_us - t.receive_time_us for t in batch if t.symbol in SYMBOLS[3:]]
    e2e_us = [result.written_time_us - t.trade_time_us for t in batch if t.symbol in SYMBOLS[3:]]
    folded_share = sum(s / e for s, e in zip(system_us, e2e_us, strict=True)) / len(system_us)
    assert _by_symbol(m.SYSTEM_SHARE)["other"] == pytest.approx(folded_share)
    assert (labels.labelled, labels.folded) == (3, 2)


def _reset(symbol: str, update_id: int = 100) -> BookResetRecord:
    return BookResetRecord(
        symbol=symbol,
        epoch=1_723_075_200_000_000,
        reason="initial",
        update_id=update_id,
        bids=((Decimal("100"), Decimal("1")),),
        asks=((Decimal("101"), Decimal("1")),),
        event_time_us=1_000_000,
        receive_time_us=1_000_500,
    )


def test_books_staleness_of_other_is_the_worst_folded_symbols(
    symbol_limit: Limit,
    redis_client: redis.Redis,
    redis_settings: RedisSettings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    symbol_limit(1)
    clock = SimpleNamespace(now=100.0)
    fake_time = SimpleNamespace(
        monotonic=lambda: clock.now, perf_counter=time.perf_counter, time_ns=time.time_ns
    )
    monkeypatch.setattr(books_module, "time", fake_time)
    sink = BookSink(redis_client, key_prefix=redis_settings.key_prefix)
    a, b, c = SYMBOLS[:3]
    sink.write([_reset(a), _reset(b)])  # a has its own series; b is folded
    clock.now = 105.0
    sink.write([_reset(c)])  # folded too
    clock.now = 112.0
    staleness = _by_symbol(m.BOOK_STALENESS)
    assert staleness == {a: 12.0, "other": 12.0}, "other: b's 12 s, the worst of b (12 s) and c (7 s)"

    clock.now = 110.0
    sink.write([_reset(b, update_id=200)])  # b written again: now c is the worst folded
    clock.now = 112.0
    assert _by_symbol(m.BOOK_STALENESS) == {a: 12.0, "other": 7.0}
    breaks = {
        s.labels["symbol"]
        for s in Scrape.from_text(generate_latest(REGISTRY).decode()).samples(m.BOOK_BREAKS)
    }
    assert {a, "other"} <= breaks, "breaks primed at 0 for each label met"
    assert not {b, c} & breaks
