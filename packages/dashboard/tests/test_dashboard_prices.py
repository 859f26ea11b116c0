"""The price cards' figures from a real Redis written by the store's sinks, and the history the
dashboard keeps beyond what Redis holds."""

from __future__ import annotations

from decimal import Decimal

import pytest

from cryptopipe.dashboard.history import MarketHistory
from cryptopipe.dashboard.prices import PriceCard, load_prices
from cryptopipe.store.prices import PriceStore

from .conftest import Market, now_us


def _cards(market: Market, symbols: list[str], history: MarketHistory, points: int = 100) -> list[PriceCard]:
    return load_prices(
        PriceStore(market.client, market.settings.key_prefix),
        symbols,
        now_us=now_us(),
        stale_seconds=10,
        history_points=points,
        history=history,
    )


def test_cards_follow_the_configured_order_and_mark_stale_symbols(market: Market) -> None:
    market.series("BTCUSDT", ["60000", "60100", "60200"], spacing_s=1.0)
    market.series("ETHUSDT", ["2500", "2490"], spacing_s=1.0, last_age_s=30.0)

    cards = _cards(market, ["ETHUSDT", "SOLUSDT", "BTCUSDT"], MarketHistory())

    assert [c.symbol for c in cards] == ["ETHUSDT", "SOLUSDT", "BTCUSDT"]
    eth, sol, btc = cards
    assert btc.price == Decimal("60200")
    assert not btc.stale
    assert [p for _, p in btc.chart] == [60000.0, 60100.0, 60200.0]
    assert eth.price == Decimal("2490")
    assert eth.stale
    assert eth.age_s is not None
    assert eth.age_s >= 30
    assert sol.price is None
    assert sol.stale
    assert sol.chart == ()


def test_no_configured_symbols_means_every_symbol_in_redis(market: Market) -> None:
    market.trade("XRPUSDT", "0.5")
    market.trade("ADAUSDT", "0.3")
    cards = _cards(market, [], MarketHistory(), points=10)
    assert [c.symbol for c in cards] == ["ADAUSDT", "XRPUSDT"]


def test_changes_over_fixed_windows_from_the_stored_trades(market: Market) -> None:
    # Trades 90, 60, 30 and 0 s back: "1m" compares the last one with the one 60 s earlier.
    market.series("BTCUSDT", ["100", "110", "120", "132"], spacing_s=30.0)
    (card,) = _cards(market, ["BTCUSDT"], MarketHistory())
    assert card.change("1m") == pytest.approx(20.0)  # 132 vs 110
    assert card.change("5m") is None  # 90 s kept say nothing about 5 min
    assert card.change("1h") is None
    assert card.kept_s == pytest.approx(90.0)


def test_the_history_outlives_what_redis_holds(market: Market) -> None:
    """Redis is read 5 trades at a time while 40 s of trades arrive; the card keeps all 40 s."""
    history = MarketHistory()
    start = now_us() - 40_000_000
    for second in range(40):
        market.trade("BTCUSDT", str(100 + second), trade_time_us=start + second * 1_000_000)
        if second % 4 == 3:
            (card,) = _cards(market, ["BTCUSDT"], history, points=5)
    assert card.kept_s == pytest.approx(39.0)
    assert [p for _, p in card.chart] == [float(100 + s) for s in range(40)]
    assert card.gaps == 0
