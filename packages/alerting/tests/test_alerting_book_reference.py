"""Book rules, property-based: generated ``book-updates`` sequences (resets, gaps, stale and late
updates, crossed books, two symbols interleaved) through the express lane's :class:`BookState` and
through the Spark operator driven as Spark drives it (any micro-batches, state through its JSON),
against the plain reference. No broker, no Spark."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from cryptopipe.alerting.book_metrics import book_metrics
from cryptopipe.alerting.book_plan import BookWindows
from cryptopipe.alerting.book_reference import reference_book_alerts, reference_metric
from cryptopipe.alerting.book_state import BookState
from cryptopipe.alerting.plan import WINDOW_COLUMNS
from cryptopipe.alerting.reference import WindowAlert
from cryptopipe.alerting.rules import Rule, parse_rule, parse_rules
from cryptopipe.alerting.sink import windows_to_alerts
from cryptopipe.schemas import BookRecord, BookResetRecord, BookUpdateRecord, OrderBook, encode_book

from .conftest import as_window_alerts, book_reset, book_update, drive_operator

BASE_US = 1_723_161_600_000_000
TICK = Decimal("0.01")
RULES = parse_rules(
    "mid:1m:0.02%:early:name=mid-early;mid:1m:0.01%:name=mid-final;spread>6bps:3s:name=wide;"
    "depth10bps<1000:name=thin;imbalance>0.5:1s:name=heavy;spread<3bps:symbols=AUSDT:name=tight;"
    "1m:0.5%:name=trades-only"
)

Book = dict[str, dict[Decimal, Decimal]]


def _levels(side: dict[Decimal, Decimal], best_first_desc: bool) -> tuple[tuple[Decimal, Decimal], ...]:
    return tuple(sorted(side.items(), reverse=best_first_desc))


class _Market:
    """True books of two symbols and the records a producer would publish for them."""

    def __init__(self) -> None:
        self.books: dict[str, Book] = {}
        self.ids: dict[str, int] = {}
        self.epochs: dict[str, int] = {}
        self.time_us = BASE_US
        self.records: list[BookRecord] = []
        self.sent: list[BookUpdateRecord] = []

    def reset(self, symbol: str, center: int) -> None:
        book = self.books.setdefault(symbol, {"bids": {}, "asks": {}})
        if not book["bids"] or not book["asks"] or max(book["bids"]) >= min(book["asks"]):
            # A producer resyncs a crossed book; a reset never carries one.
            book["bids"] = {Decimal(center - k) * TICK: Decimal(1 + k % 3) for k in range(1, 6)}
            book["asks"] = {Decimal(center + k) * TICK: Decimal(1 + k % 2) for k in range(1, 6)}
        self.epochs[symbol] = self.epochs.get(symbol, 0) + 1
        self.ids[symbol] = self.ids.get(symbol, 100) + 5
        self.records.append(
            BookResetRecord(
                symbol=symbol,
                epoch=self.epochs[symbol],
                reason="initial",
                update_id=self.ids[symbol],
                bids=_levels(book["bids"], True),
                asks=_levels(book["asks"], False),
                event_time_us=None,
                receive_time_us=self.time_us,
            )
        )

    def update(
        self, symbol: str, changes: list[tuple[bool, bool, int, int]], skip: int, back_us: int
    ) -> None:
        """Each change removes a side's best level, or sets a level near its best (up to 2 ticks better)."""
        book = self.books[symbol]
        bids: dict[Decimal, Decimal] = {}
        asks: dict[Decimal, Decimal] = {}
        for is_bid, remove, ticks, quantity in changes:
            side, target = (book["bids"], bids) if is_bid else (book["asks"], asks)
            if remove and side:
                price = max(side) if is_bid else min(side)
                target[price] = Decimal(0)
                del side[price]
                continue
            best = (max(side) if is_bid else min(side)) if side else Decimal(100) if is_bid else Decimal(101)
            price = best + (ticks - 2) * TICK * (1 if is_bid else -1)
            target[price] = side[price] = Decimal(quantity)
        first = self.ids[symbol] + 1 + skip
        self.ids[symbol] = first + len(changes) % 3
        record = BookUpdateRecord(
            symbol=symbol,
            epoch=self.epochs[symbol],
            first_update_id=first,
            final_update_id=self.ids[symbol],
            bids=tuple(bids.items()),
            asks=tuple(asks.items()),
            event_time_us=self.time_us - back_us,
            receive_time_us=self.time_us + 3_000,
        )
        self.records.append(record)
        self.sent.append(record)


_CHANGE = st.tuples(st.booleans(), st.booleans(), st.integers(0, 4), st.sampled_from([1, 2, 5, 40]))


@st.composite
def book_records(draw: st.DrawFn, max_steps: int = 70) -> list[BookRecord]:
    """Two symbols' records in arrival order: mostly contiguous updates, some gaps, repeats, late
    event times, resets; levels change near the touch, so books also cross and empty a side."""
    market = _Market()
    market.time_us += draw(st.integers(0, 59_000_000))
    for symbol, center in (("AUSDT", 10_000), ("BUSDT", 5_000)):
        if draw(st.booleans()):
            market.reset(symbol, center)
    steps = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["AUSDT", "BUSDT"]),
                st.sampled_from(["update"] * 8 + ["gap", "repeat", "late", "reset"]),
                st.sampled_from([0, 100_000, 400_000, 1_000_000, 2_500_000, 20_000_000]),
                st.lists(_CHANGE, min_size=1, max_size=3),
            ),
            max_size=max_steps,
        )
    )
    for symbol, kind, gap, changes in steps:
        market.time_us += gap
        if kind == "reset" or symbol not in market.books:
            market.reset(symbol, 10_000 if symbol == "AUSDT" else 5_000)
        elif kind == "repeat" and market.sent:
            market.records.append(market.sent[-1])
        else:
            skip = 2 if kind == "gap" else 0
            market.update(symbol, changes, skip, 3_000_000 if kind == "late" else 0)
    return market.records


def _express(records: Sequence[BookRecord], rules: Sequence[Rule], delay_ms: int = 1000) -> list[WindowAlert]:
    """The express lane's loop: a BookState per symbol, one record at a time."""
    states: dict[str, BookState] = {}
    rows: list[tuple[Any, ...]] = []
    for record in records:
        state = states.get(record.symbol) or states.setdefault(
            record.symbol, BookState(record.symbol, rules, delay_ms * 1000)
        )
        rows.extend(state.take(record) or [])
    return _alerts(rows, rules)


def _alerts(rows: list[tuple[Any, ...]], rules: Sequence[Rule]) -> list[WindowAlert]:
    named = [dict(zip(WINDOW_COLUMNS, row, strict=True)) for row in rows]
    return as_window_alerts(windows_to_alerts(named, {r.name: r for r in rules}, None, 0))


def _spark(
    batches: Sequence[Sequence[BookRecord]], rules: Sequence[Rule], delay_ms: int = 1000
) -> list[WindowAlert]:
    """Spark's loop over the book operator (see :func:`drive_operator`)."""
    return drive_operator(
        BookWindows(rules, delay_ms), batches, lambda record: {"value": encode_book(record).decode()}, rules
    )


def _cut(records: list[BookRecord], cuts: list[int]) -> list[list[BookRecord]]:
    edges = sorted({0, len(records), *(c % (len(records) + 1) for c in cuts)})
    return [records[a:b] for a, b in itertools.pairwise(edges)]


@settings(max_examples=300, deadline=None)
@given(records=book_records(), cuts=st.lists(st.integers(0, 200), max_size=8))
def test_express_lane_and_spark_operator_raise_the_reference_book_alerts(
    records: list[BookRecord], cuts: list[int]
) -> None:
    expected = reference_book_alerts(records, RULES)
    assert _express(records, RULES) == expected
    assert _spark(_cut(records, cuts), RULES) == expected
    assert _spark([records], RULES) == expected


@settings(max_examples=200, deadline=None)
@given(records=book_records(), delay_ms=st.sampled_from([0, 500, 2500]))
def test_late_points_count_for_no_rule_on_either_path(records: list[BookRecord], delay_ms: int) -> None:
    expected = reference_book_alerts(records, RULES, delay_ms)
    assert _express(records, RULES, delay_ms) == expected
    assert _spark([[r] for r in records], RULES, delay_ms) == expected


@settings(max_examples=200, deadline=None)
@given(records=book_records())
def test_metrics_equal_the_whole_book_sorted_afresh(records: list[BookRecord]) -> None:
    rules = [r for r in RULES if r.is_book]
    states: dict[str, BookState] = {}
    for record in records:
        state = states.setdefault(record.symbol, BookState(record.symbol, rules, 10**12))
        state.take(record)
        book = state.book
        if book is None:
            continue
        metrics = book_metrics(book, [10, 25])
        bids, asks = dict(book.bids), dict(book.asks)
        for rule in (*rules, parse_rule("depth25bps<1")):
            expected = reference_metric(bids, asks, rule)
            got = None if metrics is None else metrics.value(rule.metric, rule.band_bps)
            assert got == expected


def _update(u: int, time_s: float, bids: Any = (), asks: Any = (), epoch: int = 1) -> BookUpdateRecord:
    return book_update("AUSDT", u, BASE_US + int(time_s * 1e6), bids, asks, epoch)


def _reset(u: int, epoch: int, bid: str, ask: str) -> BookResetRecord:
    return book_reset("AUSDT", u, epoch, bid, ask)


def test_spread_held_for_its_hold_time_alerts_once_per_episode() -> None:
    rules = parse_rules("spread>5bps:10s:name=wide")
    records: list[BookRecord] = [
        _reset(10, 1, "99.99", "100.01"),  # 2 bps
        _update(11, 1, asks=[("100.01", "0"), ("100.06", "1")]),  # 7 bps from 1 s
        _update(12, 6, bids=[("99.98", "1")]),
        _update(13, 11, bids=[("99.97", "1")]),  # held 10 s: alert (open 7 bps, close 7 bps)
        _update(14, 30, bids=[("99.50", "1")]),  # still wide: the same episode, no second alert
        _update(15, 31, asks=[("100.00", "1")]),  # 1 bps: the episode ends
    ]
    alerts = reference_book_alerts(records, rules)
    assert [(a.window_start_us - BASE_US, a.window_end_us - a.window_start_us, a.open) for a in alerts] == [
        (1_000_000, 10_000_000, Decimal("6.998250437390652336915771057"))
    ]
    assert _express(records, rules) == alerts == _spark([records], rules)


def test_a_reset_is_a_discontinuity_windows_never_span_its_jump() -> None:
    rules = parse_rules("mid:1m:0.5%:name=move;spread>5bps:5s:name=wide")
    records: list[BookRecord] = [
        _reset(10, 1, "99.99", "100.01"),
        _update(11, 1, bids=[("99.98", "1")]),  # mid 100
        _update(12, 3, asks=[("100.01", "0"), ("100.20", "1")]),  # spread 21 bps from 3 s
        _reset(50, 2, "109.99", "110.01"),  # resync: the book jumped 10 %; the episode ends
        _update(51, 6, bids=[("109.98", "1")]),  # 8 s: wide was still held, but not across the reset
        _update(52, 62, bids=[("109.97", "1")]),  # closes minute 0: mid 110 since the reset, no move
    ]
    assert reference_book_alerts(records, rules) == [] == _express(records, rules) == _spark([records], rules)
    # Without the reset: the mid falls 0.65 % (100 -> 99.35) and the spread stays wide.
    drop = _update(13, 40, bids=[("99.99", "0"), ("99.98", "0"), ("98.5", "1")])
    moved = [*records[:3], drop, _update(14, 62, bids=[("98.4", "1")])]
    alert = reference_book_alerts(moved, rules)
    assert [(a.rule, a.kind) for a in alert] == [("move", "final"), ("wide", "final")]
    assert _express(moved, rules) == alert == _spark([moved], rules)


def test_book_state_survives_its_json(tmp_path: Any) -> None:
    state = BookState("AUSDT", RULES, 1_000_000)
    state.take(_reset(10, 1, "99.99", "100.01"))
    state.take(_update(11, 1, bids=[("99.98", "2")]))
    again = BookState("AUSDT", RULES, 1_000_000)
    again.load(state.dump())
    assert again.dump() == state.dump()
    assert isinstance(again.book, OrderBook)
    assert again.book.best_bid() == (Decimal("99.99"), Decimal(1))
