"""Ingest's per-symbol series under METRICS_SYMBOL_LIMIT: the first symbols keep their own, the
rest count under ``other`` with every total exact, and the market's page stays a bounded size."""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable
from decimal import Decimal

from prometheus_client import REGISTRY, generate_latest

from cryptopipe.ingest import IngestSettings
from cryptopipe.ingest.service import Ingest
from cryptopipe.observability import Scrape
from cryptopipe.observability import metrics as m
from cryptopipe.observability.metrics.symbols import DEFAULT_SYMBOL_LIMIT
from cryptopipe.observability.query import Series
from cryptopipe.schemas import KafkaSettings, Trade, settings_of

Limit = Callable[[int], m.SymbolLabels]


class _Publisher:
    def __init__(self) -> None:
        self.trades: list[Trade] = []

    def publish(self, trade: Trade) -> bool:
        self.trades.append(trade)
        return True


def _trade(symbol: str, trade_id: int) -> Trade:
    now_us = time.time_ns() // 1000
    return Trade(
        symbol=symbol,
        trade_id=trade_id,
        price=Decimal("1.5"),
        quantity=Decimal("2"),
        buyer_is_maker=False,
        trade_time_us=now_us - 2_000,
        event_time_us=now_us - 1_900,
        receive_time_us=now_us,
    )


def _ingest(symbols: tuple[str, ...]) -> tuple[Ingest, _Publisher]:
    """Ingest as it starts (its series primed), its trades published nowhere."""
    ingest = Ingest(settings_of(IngestSettings, symbols=",".join(symbols), depth="off"), KafkaSettings())
    ingest._prime_metrics()
    publisher = _Publisher()
    ingest.trades.publisher = publisher  # type: ignore[assignment]
    return ingest, publisher


def _by_symbol(scrape: Scrape, metric: Series, symbols: tuple[str, ...]) -> dict[str, float]:
    mine = {*symbols, m.OTHER}
    return {s.labels["symbol"]: s.value for s in scrape.samples(metric) if s.labels["symbol"] in mine}


def test_five_symbols_at_a_limit_of_three_count_two_under_other(symbol_limit: Limit) -> None:
    labels = symbol_limit(3)
    symbols = ("LIMAUSDT", "LIMBUSDT", "LIMCUSDT", "LIMDUSDT", "LIMEUSDT")
    ingest, publisher = _ingest(symbols)
    sent = dict(zip(symbols, (1, 2, 3, 4, 5), strict=True))
    for symbol, count in sent.items():
        for trade_id in range(1, count + 1):
            ingest.trades.on_live_trade(_trade(symbol, trade_id), time.perf_counter())
        ingest.trades.on_live_trade(_trade(symbol, count), time.perf_counter())  # a duplicate
    ingest.trades.flush_histograms()
    scrape = Scrape.from_text(generate_latest(REGISTRY).decode())

    received = _by_symbol(scrape, m.TRADES_RECEIVED, symbols)
    assert received == {"LIMAUSDT": 2, "LIMBUSDT": 3, "LIMCUSDT": 4, "other": 5 + 6}
    assert sum(received.values()) == ingest.stats.received == sum(sent.values()) + len(symbols)
    duplicates = _by_symbol(scrape, m.DUPLICATES, symbols)
    assert duplicates == {"LIMAUSDT": 1, "LIMBUSDT": 1, "LIMCUSDT": 1, "other": 2}
    assert sum(duplicates.values()) == ingest.stats.duplicates
    assert len(publisher.trades) == sum(sent.values())
    latencies = {
        s.labels["symbol"]: s.value
        for s in scrape.samples("cryptopipe_network_latency_seconds_count")
        if s.labels["symbol"] in {*symbols, m.OTHER}
    }
    assert latencies == received, "one latency per trade received, under the same label"
    resyncs = {s.labels["symbol"] for s in scrape.samples(m.BOOK_RESYNCS)} & {*symbols, m.OTHER}
    assert resyncs == {"LIMAUSDT", "LIMBUSDT", "LIMCUSDT", "other"}, "primed for the own labels only"
    assert (labels.labelled, labels.folded) == (3, 2)


def test_the_market_page_has_a_bounded_number_of_lines(symbol_limit: Limit) -> None:
    symbol_limit(DEFAULT_SYMBOL_LIMIT)
    market = tuple(f"MKT{i:04d}USDT" for i in range(1500))
    ingest, _ = _ingest(market)
    for symbol in market:
        ingest.trades.on_live_trade(_trade(symbol, 1), time.perf_counter())
    ingest.trades.flush_histograms()
    text = generate_latest(REGISTRY).decode()
    lines_of = Counter(re.findall(r'^[^#].*symbol="([^"]*)"', text, re.MULTILINE))

    per_symbol = lines_of[market[0]]
    market_lines = sum(lines_of[s] for s in market) + lines_of[m.OTHER]
    assert lines_of[market[DEFAULT_SYMBOL_LIMIT - 1]] == per_symbol
    assert lines_of[market[DEFAULT_SYMBOL_LIMIT]] == 0
    assert lines_of[m.OTHER] == per_symbol
    assert market_lines == (DEFAULT_SYMBOL_LIMIT + 1) * per_symbol
    assert market_lines < 10_000, "1,500 symbols at the default limit: ~9,000 lines (150,000 without)"
    assert "_created" not in text
    scrape = Scrape.from_text(text)
    assert sum(_by_symbol(scrape, m.TRADES_RECEIVED, market).values()) == len(market)
