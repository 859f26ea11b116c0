"""The alert semantics as plain Python: the yardstick the Spark job is tested and benchmarked against.

Lateness is decided per symbol, in the order trades arrive, and never by batch timing:

- a trade is *late* when its trade time is more than the watermark delay behind the newest trade
  time already seen for its symbol; late trades are dropped and counted;
- a window of a symbol closes, and its final result is emitted, once that symbol's newest trade
  time is at least ``window_end + delay``: from then on every trade for it would be late;
- an early rule fires on the first accepted trade, in arrival order, after which the window's
  open/close (by trade time, then trade id) cross the threshold.

So the same trades in the same arrival order give the same alerts, however they are cut into
micro-batches and at whatever speed they are replayed. ``batches`` are accepted (and flattened)
so that callers can keep describing arrivals batch by batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from cryptopipe.alerting.rules import Rule, price_rules
from cryptopipe.schemas import AlertKind, Side, Trade


@dataclass(frozen=True, slots=True, order=True)
class WindowAlert:
    """An alert's identity and content, without the timing fields (comparable across runs)."""

    rule: str
    symbol: str
    window_start_us: int
    kind: AlertKind
    window_end_us: int
    side: Side
    open: Decimal
    close: Decimal
    pct_change: float

    def as_dict(self) -> dict[str, object]:
        """The ``cryptopipe up --summary-json`` shape (prices as strings, as on the wire)."""
        return {
            "rule": self.rule,
            "symbol": self.symbol,
            "kind": self.kind,
            "side": self.side,
            "window_start_us": self.window_start_us,
            "window_end_us": self.window_end_us,
            "open": str(self.open),
            "close": str(self.close),
            "pct_change": self.pct_change,
        }


def side_of(open_price: Decimal, close_price: Decimal) -> Side:
    """``SELL`` when the price rose, ``BUY`` when it fell (the seed's convention)."""
    return "SELL" if close_price > open_price else "BUY"


def pct_change(open_price: Decimal, close_price: Decimal) -> float:
    """``(close - open) / open`` computed in Decimal, then rounded once to a float (0 from 0: a
    book metric such as depth or imbalance can start at 0)."""
    if not open_price:
        return 0.0
    return float((close_price - open_price) / open_price)


def plain(value: Decimal) -> Decimal:
    """The same number without trailing zeros or an exponent: ``100.000`` -> ``100``."""
    if value == value.to_integral_value():
        return value.quantize(Decimal(1))
    return value.normalize()


def make_alert(
    rule: Rule, symbol: str, start_us: int, kind: AlertKind, open_: Decimal, close: Decimal
) -> WindowAlert:
    return WindowAlert(
        rule=rule.name,
        symbol=symbol,
        window_start_us=start_us,
        kind=kind,
        window_end_us=rule.window_end_us(start_us),
        side=side_of(open_, close),
        open=plain(open_),
        close=plain(close),
        pct_change=pct_change(open_, close),
    )


@dataclass
class ReferenceResult:
    alerts: list[WindowAlert]
    #: late trades, dropped (each counted once, whatever the number of rules)
    dropped: int
    #: the newest trade time seen per symbol (µs)
    newest_us: dict[str, int]
    #: every closed window as (rule, symbol, start) -> (open, close), alert or not
    closed: dict[tuple[str, str, int], tuple[Decimal, Decimal]] = field(default_factory=dict)


def one_per_batch(trades: Iterable[Trade]) -> list[list[Trade]]:
    return [[trade] for trade in trades]


def _key(trade: Trade) -> tuple[int, int]:
    return (trade.trade_time_us, trade.trade_id)


def reference_alerts(
    batches: Iterable[Sequence[Trade]], rules: Sequence[Rule], watermark_delay_ms: int = 1000
) -> ReferenceResult:
    """Alerts for trades arriving in this order (batch boundaries do not matter)."""
    delay_us = watermark_delay_ms * 1000
    newest: dict[str, int] = {}
    dropped = 0
    open_windows: dict[tuple[str, str, int], list[Trade]] = {}
    early_fired: set[tuple[str, str, int]] = set()
    alerts: list[WindowAlert] = []
    closed: dict[tuple[str, str, int], tuple[Decimal, Decimal]] = {}
    rules = price_rules(rules)
    by_name = {rule.name: rule for rule in rules}
    for trade in (t for batch in batches for t in batch):
        seen = newest.get(trade.symbol)
        if seen is not None and seen - trade.trade_time_us > delay_us:
            dropped += 1
            continue
        newest[trade.symbol] = seen = max(seen or trade.trade_time_us, trade.trade_time_us)
        for rule in rules:
            if not rule.applies_to(trade.symbol):
                continue
            start = rule.window_start_us(trade.trade_time_us)
            key = (rule.name, trade.symbol, start)
            window = open_windows.setdefault(key, [])
            window.append(trade)
            if rule.mode == "early" and key not in early_fired:
                first, last = min(window, key=_key), max(window, key=_key)
                if rule.crosses(trade.symbol, first.price, last.price):
                    early_fired.add(key)
                    alerts.append(make_alert(rule, trade.symbol, start, "early", first.price, last.price))
        for key in [k for k in open_windows if k[1] == trade.symbol]:
            rule = by_name[key[0]]
            if key[2] + rule.window_us + delay_us > seen:
                continue
            window = open_windows.pop(key)
            first, last = min(window, key=_key), max(window, key=_key)
            closed[key] = (first.price, last.price)
            if key not in early_fired and rule.crosses(key[1], first.price, last.price):
                alerts.append(make_alert(rule, key[1], key[2], "final", first.price, last.price))
    return ReferenceResult(sorted(alerts), dropped, newest, closed)
