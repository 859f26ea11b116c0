"""The alert semantics as plain Python: the yardstick the Spark job is tested and benchmarked against.

It models Spark's event-time rules exactly, including their units:

- the watermark is in milliseconds: ``floor(max trade time seen, ms) - delay``, never moving back,
  and a micro-batch sees the watermark computed at the end of the previous one;
- a trade whose window already closed (``window_end <= watermark``) is dropped and counted;
- a window closes, and its final result is emitted, once ``window_end <= watermark``.

Trades arrive in *batches*; :func:`one_per_batch` turns a sequence into one batch per trade, the
pacing under which batch boundaries cannot change the outcome.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from cryptopipe.alerting.rules import Rule
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
    """``(close - open) / open`` computed in Decimal, then rounded once to a float."""
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
        window_end_us=start_us + rule.window_us,
        side=side_of(open_, close),
        open=plain(open_),
        close=plain(close),
        pct_change=pct_change(open_, close),
    )


@dataclass
class ReferenceResult:
    alerts: list[WindowAlert]
    dropped: int
    watermark_ms: int
    #: every closed window as (rule, symbol, start) -> (open, close), alert or not
    closed: dict[tuple[str, str, int], tuple[Decimal, Decimal]] = field(default_factory=dict)


def one_per_batch(trades: Iterable[Trade]) -> list[list[Trade]]:
    return [[trade] for trade in trades]


def _key(trade: Trade) -> tuple[int, int]:
    return (trade.trade_time_us, trade.trade_id)


def reference_alerts(
    batches: Iterable[Sequence[Trade]], rules: Sequence[Rule], watermark_delay_ms: int = 1000
) -> ReferenceResult:
    """Alerts a Spark job with these rules raises for trades arriving in these micro-batches."""
    watermark_ms = 0
    max_ms: int | None = None
    dropped = 0
    accepted: dict[tuple[str, str, int], list[Trade]] = {}
    early_fired: set[tuple[str, str, int]] = set()
    alerts: list[WindowAlert] = []
    for batch in batches:
        for rule in rules:
            # Early checks run per trade, in (time, id) order within a batch, in arrival order across.
            for trade in sorted((t for t in batch if rule.applies_to(t.symbol)), key=_key):
                start = rule.window_start_us(trade.trade_time_us)
                if start + rule.window_us <= watermark_ms * 1000:
                    dropped += 1
                    continue
                key = (rule.name, trade.symbol, start)
                window = accepted.setdefault(key, [])
                window.append(trade)
                if rule.mode == "early" and key not in early_fired:
                    first, last = min(window, key=_key), max(window, key=_key)
                    if rule.crosses(trade.symbol, first.price, last.price):
                        early_fired.add(key)
                        alerts.append(make_alert(rule, trade.symbol, start, "early", first.price, last.price))
        for trade in batch:
            trade_ms = trade.trade_time_us // 1000
            max_ms = trade_ms if max_ms is None else max(max_ms, trade_ms)
        if max_ms is not None:
            watermark_ms = max(watermark_ms, max_ms - watermark_delay_ms)

    closed: dict[tuple[str, str, int], tuple[Decimal, Decimal]] = {}
    by_name = {rule.name: rule for rule in rules}
    for (name, symbol, start), window in sorted(accepted.items()):
        rule = by_name[name]
        if start + rule.window_us > watermark_ms * 1000:
            continue
        first, last = min(window, key=_key), max(window, key=_key)
        closed[(name, symbol, start)] = (first.price, last.price)
        if (name, symbol, start) not in early_fired and rule.crosses(symbol, first.price, last.price):
            alerts.append(make_alert(rule, symbol, start, "final", first.price, last.price))
    # Rule-by-rule counting above counts a trade once per rule it applies to, like Spark's
    # per-rule rows do; ``dropped`` is therefore in rule-rows, the unit Spark reports.
    return ReferenceResult(sorted(alerts), dropped, watermark_ms, closed)
