"""The book rules' semantics as plain Python: the yardstick of the express lane and the Spark operator.

Written apart from :mod:`cryptopipe.alerting.book_state`, the most direct way: each book a pair
of dicts, every metric from all its levels sorted afresh, every window a list of its points.
``book_state``'s docstring states the semantics; this module is them, spelled out slowly.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from cryptopipe.alerting.reference import WindowAlert, make_alert
from cryptopipe.alerting.rules import Rule
from cryptopipe.schemas import BookRecord, BookResetRecord

BPS = Decimal(10_000)
Point = tuple[int, int, Decimal]  # (event time, update id, value)


@dataclass
class _Symbol:
    bids: dict[Decimal, Decimal] | None = None
    asks: dict[Decimal, Decimal] = field(default_factory=dict)
    epoch: int = -1
    update_id: int = -1
    newest: int | None = None
    windows: dict[tuple[str, int], list[Point]] = field(default_factory=dict)
    fired: set[tuple[str, int]] = field(default_factory=set)
    episodes: dict[str, tuple[int, Decimal]] = field(default_factory=dict)
    done: set[str] = field(default_factory=set)

    def discontinuity(self) -> None:
        self.episodes.clear()
        self.done.clear()
        self.windows = {key: points for key, points in self.windows.items() if key in self.fired}


def reference_metric(
    bids: dict[Decimal, Decimal], asks: dict[Decimal, Decimal], rule: Rule
) -> Decimal | None:
    """The value ``rule`` reads from a whole book, from every level (None: a side is empty)."""
    if not bids or not asks:
        return None
    bid, ask = max(bids), min(asks)
    mid = (bid + ask) / 2
    if rule.metric == "mid":
        return mid
    if rule.metric == "spread":
        return (ask - bid) / mid * BPS
    if rule.metric == "imbalance":
        return (bids[bid] - asks[ask]) / (bids[bid] + asks[ask])
    assert rule.band_bps is not None
    every = sorted(bids.items(), reverse=True) + sorted(asks.items())
    return sum((p * q for p, q in every if abs(p - mid) * BPS <= rule.band_bps * mid), Decimal(0))


def _moved(s: _Symbol, record: BookRecord) -> bool:
    """Move the book by ``record``; True when it gives a metric point."""
    if isinstance(record, BookResetRecord):
        newer = record.update_id > s.update_id or s.bids is None
        if record.epoch > s.epoch or (record.epoch == s.epoch and newer):
            s.bids, s.asks = dict(record.bids), dict(record.asks)
            s.epoch, s.update_id = record.epoch, record.update_id
            s.discontinuity()
        return False
    if record.epoch < s.epoch or s.bids is None:
        return False
    if record.epoch > s.epoch or record.first_update_id > s.update_id + 1:
        s.bids = None
        s.discontinuity()
        return False
    if record.final_update_id <= s.update_id:
        return False
    for book, levels in ((s.bids, record.bids), (s.asks, record.asks)):
        for price, quantity in levels:
            if quantity:
                book[price] = quantity
            else:
                book.pop(price, None)
    s.update_id = record.final_update_id
    if s.bids and s.asks and max(s.bids) >= min(s.asks):
        s.bids = None
        s.discontinuity()
        return False
    return True


def reference_book_alerts(
    records: Iterable[BookRecord], rules: Sequence[Rule], watermark_delay_ms: int = 1000
) -> list[WindowAlert]:
    """The alerts of the book rules among ``rules`` for ``book-updates`` records in this order."""
    delay_us = watermark_delay_ms * 1000
    book_rules = [rule for rule in rules if rule.is_book]
    symbols: dict[str, _Symbol] = {}
    alerts: list[WindowAlert] = []
    for record in records:
        s = symbols.setdefault(record.symbol, _Symbol())
        if not _moved(s, record) or isinstance(record, BookResetRecord):
            continue
        assert s.bids is not None
        t, i = record.event_time_us, record.final_update_id
        if not s.asks or not s.bids:
            s.episodes.clear()
            s.done.clear()
            continue
        if s.newest is not None and s.newest - t > delay_us:
            continue
        s.newest = t if s.newest is None else max(s.newest, t)
        for rule in (r for r in book_rules if r.applies_to(record.symbol)):
            value = reference_metric(s.bids, s.asks, rule)
            assert value is not None
            if rule.is_level:
                alerts.extend(_level(s, rule, record.symbol, t, value))
            else:
                alerts.extend(_early(s, rule, record.symbol, (t, i, value)))
        alerts.extend(_closed(s, book_rules, record.symbol, delay_us))
    return sorted(alerts)


def _level(s: _Symbol, rule: Rule, symbol: str, t: int, value: Decimal) -> list[WindowAlert]:
    bound = rule.overrides.get(symbol, rule.threshold)
    if not (value > bound if rule.op == ">" else value < bound):
        s.episodes.pop(rule.name, None)
        s.done.discard(rule.name)
        return []
    start, first = s.episodes.setdefault(rule.name, (t, value))
    if rule.name in s.done or t - start < rule.hold_us:
        return []
    s.done.add(rule.name)
    return [make_alert(rule, symbol, start, "final", first, value)]


def _early(s: _Symbol, rule: Rule, symbol: str, point: Point) -> list[WindowAlert]:
    start = point[0] - point[0] % rule.window_us
    points = s.windows.setdefault((rule.name, start), [])
    points.append(point)
    if rule.mode != "early" or (rule.name, start) in s.fired:
        return []
    first, last = min(points), max(points)
    if not rule.crosses(symbol, first[2], last[2]):
        return []
    s.fired.add((rule.name, start))
    return [make_alert(rule, symbol, start, "early", first[2], last[2])]


def _closed(s: _Symbol, rules: Sequence[Rule], symbol: str, delay_us: int) -> list[WindowAlert]:
    by_name = {rule.name: rule for rule in rules}
    alerts = []
    assert s.newest is not None
    for key in sorted(s.windows):
        rule = by_name[key[0]]
        if key[1] + rule.window_us + delay_us > s.newest:
            continue
        points = s.windows.pop(key)
        fired = key in s.fired
        s.fired.discard(key)
        first, last = min(points), max(points)
        if not fired and rule.crosses(symbol, first[2], last[2]):
            alerts.append(make_alert(rule, symbol, key[1], "final", first[2], last[2]))
    return alerts
