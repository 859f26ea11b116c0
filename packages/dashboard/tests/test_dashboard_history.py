"""The history the dashboard keeps by market time: bounded, an hour and more, fixed-window changes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cryptopipe.dashboard.history import (
    CHART_POINTS,
    KEEP_S,
    Change,
    MarketHistory,
    SymbolHistory,
    changes,
    thin,
)

S = 1_000_000


def test_three_hours_of_a_busy_market_keep_the_last_two_by_second() -> None:
    """Ten trades a second, read 1,000 at a time (what Redis holds) every 90 s of market time:
    memory stays one point a second."""
    history = SymbolHistory()
    time_us = 0
    for _ in range(3 * 3600 // 90):
        trades = [(time_us + i * 100_000, 100.0 + i % 7) for i in range(1000)]  # 100 s of trades
        history.add(trades, full=True)
        time_us += 900 * 100_000
    assert len(history) == KEEP_S + 1
    assert history.span_s() == pytest.approx(KEEP_S, abs=1)
    assert history.gaps == 0  # each read overlapped the last one: nothing missed
    assert all(c.pct is not None for c in changes(history.points()))


def test_changes_compare_the_last_price_with_the_window_starts() -> None:
    history = SymbolHistory()
    # 100 an hour back, 110 five minutes back, 120 a minute back, 132 now (times in whole seconds).
    history.add([(0, 100.0), (3300 * S, 110.0), (3540 * S, 120.0), (3600 * S, 132.0)], full=False)
    assert changes(history.points()) == (
        Change("1m", pytest.approx(10.0)),
        Change("5m", pytest.approx(20.0)),
        Change("1h", pytest.approx(32.0)),
    )


def test_a_window_longer_than_what_is_kept_has_no_change() -> None:
    history = SymbolHistory()
    history.add([(0, 200.0), (20 * S, 190.0), (90 * S, 180.0)], full=False)
    one, five, hour = changes(history.points())
    assert one == Change("1m", pytest.approx(-5.263157, rel=1e-5))  # 180 vs 190, the price 60 s back
    assert five.pct is None
    assert hour.pct is None


def test_a_full_read_that_shares_nothing_with_what_is_kept_is_a_gap() -> None:
    history = SymbolHistory()
    history.add([(0, 1.0), (S, 2.0)], full=True)
    history.add([(S, 2.0), (2 * S, 3.0)], full=True)  # overlaps: nothing missed
    history.add([(10 * S, 4.0), (11 * S, 5.0)], full=False)  # Redis had no more: nothing missed
    assert history.gaps == 0
    history.add([(20 * S, 6.0), (21 * S, 7.0)], full=True)  # more may have come in between
    assert history.gaps == 1


def test_symbols_are_kept_apart() -> None:
    market = MarketHistory()
    market.add("BTCUSDT", [(0, 1.0)], full=False)
    points, gaps = market.add("ETHUSDT", [(S, 2.0)], full=False)
    assert points == [(S, 2.0)]
    assert gaps == 0


@given(
    prices=st.dictionaries(st.integers(0, 5000), st.floats(1, 1e6), min_size=1, max_size=60),
    batch=st.integers(1, 20),
)
def test_whole_second_trades_fed_in_any_batches_give_the_exact_changes(
    prices: dict[int, float], batch: int
) -> None:
    trades = [(second * S, price) for second, price in sorted(prices.items())]
    history = SymbolHistory()
    for start in range(0, len(trades), batch):
        history.add(trades[start : start + batch], full=False)
    assert history.points() == [t for t in trades if t[0] >= trades[-1][0] - KEEP_S * S]
    last_time, last = trades[-1]
    for change, seconds in zip(changes(history.points()), (60, 300, 3600), strict=True):
        before = [p for t, p in trades if t <= last_time - seconds * S]
        if not before:
            assert change.pct is None
        else:
            assert change.pct == pytest.approx((last - before[-1]) / before[-1] * 100)


def test_the_chart_shows_the_newest_hour_in_a_bounded_number_of_points() -> None:
    points = [(second * S, float(second)) for second in range(KEEP_S)]
    shown = thin(points)
    assert len(shown) <= CHART_POINTS
    assert shown[-1] == points[-1]
    assert shown[0][0] >= points[-1][0] - 3600 * S
    assert shown[0][0] <= points[-1][0] - 3590 * S
    few = points[-100:]
    assert thin(few) == few  # short histories are drawn point for point
