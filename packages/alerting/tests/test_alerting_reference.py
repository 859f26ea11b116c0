"""Window arithmetic, property-based: the reference's own laws, and the stateful window operator
(the function Spark runs per symbol) replayed against the reference, no Spark."""

from __future__ import annotations

import itertools
import random
from collections import defaultdict
from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from cryptopipe.alerting.plan import SymbolWindows
from cryptopipe.alerting.reference import (
    WindowAlert,
    one_per_batch,
    pct_change,
    plain,
    reference_alerts,
    side_of,
)
from cryptopipe.alerting.rules import Rule, parse_rules
from cryptopipe.schemas import Trade

from .conftest import drive_operator

BASE_US = 1_723_161_600_000_000
RULES = parse_rules("1m:0.5%;2m:1%:name=slow;1m:0.4%:early:name=early")


def _trade(symbol: str, trade_id: int, cents: int, time_us: int) -> Trade:
    return Trade(
        symbol=symbol,
        trade_id=trade_id,
        price=Decimal(cents) / 100,
        quantity=Decimal(1),
        buyer_is_maker=True,
        trade_time_us=time_us,
        event_time_us=time_us,
        receive_time_us=time_us + 5_000,
    )


@st.composite
def ordered_trades(draw: st.DrawFn, max_size: int = 80) -> list[Trade]:
    """Trades of two symbols in (time, id) order, with runs of equal timestamps."""
    steps = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["AUSDT", "BUSDT"]),
                st.sampled_from([0, 0, 1_000, 400_000, 5_000_000, 30_000_000]),
                st.integers(-90, 90),
            ),
            min_size=1,
            max_size=max_size,
        )
    )
    time_us, cents, next_id = BASE_US + draw(st.integers(0, 59_000_000)), {"AUSDT": 10_000, "BUSDT": 5_000}, 1
    trades = []
    for symbol, gap, move in steps:
        time_us += gap
        cents[symbol] = max(100, cents[symbol] + move)
        trades.append(_trade(symbol, next_id, cents[symbol], time_us))
        next_id += 1
    return trades


def _closed_windows_by_brute_force(
    trades: Sequence[Trade], rule: Rule, delay_us: int = 1_000_000
) -> dict[Any, Any]:
    """Open/close of every closed window of in-order trades, by sorting each window's trades."""
    windows: dict[tuple[str, int], list[Trade]] = defaultdict(list)
    newest: dict[str, int] = {}
    for t in trades:
        start = t.trade_time_us // rule.window_us * rule.window_us
        windows[(t.symbol, start)].append(t)
        newest[t.symbol] = max(newest.get(t.symbol, 0), t.trade_time_us)
    result = {}
    for (symbol, start), members in windows.items():
        if start + rule.window_us + delay_us <= newest[symbol]:
            ordered = sorted(members, key=lambda t: (t.trade_time_us, t.trade_id))
            result[(rule.name, symbol, start)] = (ordered[0].price, ordered[-1].price)
    return result


@settings(max_examples=300, deadline=None)
@given(trades=ordered_trades(), seed=st.integers(0, 2**32 - 1))
def test_final_windows_do_not_depend_on_arrival_order_of_equal_timestamps(
    trades: list[Trade], seed: int
) -> None:
    shuffled = list(trades)
    rng = random.Random(seed)
    # Shuffle within runs of equal timestamps: arrival order differs, the facts do not.
    start = 0
    for i in range(1, len(shuffled) + 1):
        if i == len(shuffled) or shuffled[i].trade_time_us != shuffled[start].trade_time_us:
            run = shuffled[start:i]
            rng.shuffle(run)
            shuffled[start:i] = run
            start = i
    final_rules = [r for r in RULES if r.mode == "final"]
    a = reference_alerts(one_per_batch(trades), final_rules)
    b = reference_alerts(one_per_batch(shuffled), final_rules)
    c = reference_alerts([shuffled], final_rules)  # one micro-batch holding everything
    assert a.alerts == b.alerts == c.alerts
    assert a.closed == b.closed == c.closed
    assert a.dropped == b.dropped == c.dropped == 0


@settings(max_examples=300, deadline=None)
@given(trades=ordered_trades())
def test_window_arithmetic(trades: list[Trade]) -> None:
    result = reference_alerts(one_per_batch(trades), RULES)
    for symbol in {t.symbol for t in trades}:
        assert result.newest_us[symbol] == max(t.trade_time_us for t in trades if t.symbol == symbol)
    for rule in RULES:
        expected = _closed_windows_by_brute_force(trades, rule)
        assert {k: v for k, v in result.closed.items() if k[0] == rule.name} == expected
    by_name = {r.name: r for r in RULES}
    for alert in result.alerts:
        rule = by_name[alert.rule]
        assert alert.window_start_us % rule.window_us == 0
        assert alert.window_end_us == alert.window_start_us + rule.window_us
        assert rule.crosses(alert.symbol, alert.open, alert.close)
        assert alert.side == ("SELL" if alert.close > alert.open else "BUY")
        assert (alert.pct_change > 0) == (alert.side == "SELL")
        assert abs(alert.pct_change) > float(rule.threshold) * 0.999
        if alert.kind == "final":
            assert result.closed[(alert.rule, alert.symbol, alert.window_start_us)] == (
                alert.open,
                alert.close,
            )
    keys = [(a.rule, a.symbol, a.window_start_us) for a in result.alerts]
    assert len(keys) == len(set(keys)), "at most one alert per (rule, symbol, window)"


def test_side_and_change_follow_the_seed() -> None:
    assert side_of(Decimal(100), Decimal(101)) == "SELL"
    assert side_of(Decimal(100), Decimal(99)) == "BUY"
    assert pct_change(Decimal(100), Decimal("100.5")) == 0.005
    assert str(plain(Decimal("60000.000000000000000000"))) == "60000"
    assert str(plain(Decimal("0.001000"))) == "0.001"


def test_late_is_decided_per_symbol_in_arrival_order_not_by_batches() -> None:
    rule = parse_rules("1m:0.5%")
    arrivals = [
        _trade("AUSDT", 1, 10_000, BASE_US + 1_000_000),
        _trade("AUSDT", 2, 10_000, BASE_US + 60_500_000),  # newest A: 60.5 s
        _trade("AUSDT", 3, 11_000, BASE_US + 59_600_000),  # 0.9 s behind: counts, the window is +10 %
        _trade("BUSDT", 1, 5_000, BASE_US + 90_000_000),  # another symbol does not make A's trades late
        _trade("AUSDT", 4, 12_000, BASE_US + 59_700_000),  # 0.8 s behind: counts
        _trade("AUSDT", 5, 10_000, BASE_US + 62_000_000),  # newest A: 62 s: the first window closes
        _trade("AUSDT", 6, 9_000, BASE_US + 30_000_000),  # 32 s behind: dropped
        _trade("AUSDT", 7, 9_000, BASE_US + 60_900_000),  # 1.1 s behind: dropped, window still open
    ]
    expected = [(Decimal(100), Decimal(120))]
    # One trade per batch, or all in one batch (the case where Spark's watermark, which moves
    # once per batch, would count trades 6 and 7): the same alerts and drops.
    for batches in (one_per_batch(arrivals), [arrivals], [arrivals[:3], arrivals[3:]]):
        result = reference_alerts(batches, rule)
        assert result.dropped == 2
        assert [(a.open, a.close) for a in result.alerts] == expected
        assert _drive(batches, rule) == result.alerts


# --- the stateful window operator, replayed the way Spark drives it ---------------------------


def _drive(
    batches: Sequence[Sequence[Trade]], rules: Sequence[Rule], delay_ms: int = 1000
) -> list[WindowAlert]:
    """Spark's loop over the trades' operator (see :func:`drive_operator`)."""

    def row(t: Trade) -> dict[str, Any]:
        return {
            "trade_time_us": t.trade_time_us,
            "trade_id": t.trade_id,
            "price": str(t.price),
            "receive_time_us": t.receive_time_us,
        }

    return drive_operator(SymbolWindows(rules, delay_ms), batches, row, rules)


def _batches(trades: list[Trade], cuts: list[int]) -> Iterator[list[Trade]]:
    edges = sorted({0, len(trades), *(c % (len(trades) + 1) for c in cuts)})
    for a, b in itertools.pairwise(edges):
        yield trades[a:b]


@settings(max_examples=300, deadline=None)
@given(trades=ordered_trades(), cuts=st.lists(st.integers(0, 200), max_size=8))
def test_stateful_operator_matches_reference_under_any_batching(trades: list[Trade], cuts: list[int]) -> None:
    expected = reference_alerts(one_per_batch(trades), RULES).alerts
    assert _drive(list(_batches(trades, cuts)), RULES) == expected
    assert _drive(one_per_batch(trades), RULES) == expected
    assert _drive([trades], RULES) == expected


@settings(max_examples=300, deadline=None)
@given(
    trades=ordered_trades(max_size=60),
    data=st.data(),
    delay_ms=st.sampled_from([0, 500, 1000, 2500]),
)
def test_stateful_operator_matches_reference_with_late_trades(
    trades: list[Trade], data: st.DataObject, delay_ms: int
) -> None:
    # Arrival order with delays of up to 3 s: some trades are late and dropped. Whatever the
    # micro-batches, the operator drops and raises what the arrival-order reference does.
    delays = data.draw(st.lists(st.integers(0, 3_000_000), min_size=len(trades), max_size=len(trades)))
    arrival = [
        t
        for _, _, t in sorted(
            (t.trade_time_us + d, i, t) for i, (t, d) in enumerate(zip(trades, delays, strict=True))
        )
    ]
    cuts = data.draw(st.lists(st.integers(0, 200), max_size=8))
    expected = reference_alerts(one_per_batch(arrival), RULES, delay_ms)
    assert _drive(one_per_batch(arrival), RULES, delay_ms) == expected.alerts
    assert _drive(list(_batches(arrival, cuts)), RULES, delay_ms) == expected.alerts
    assert reference_alerts(list(_batches(arrival, cuts)), RULES, delay_ms) == expected
