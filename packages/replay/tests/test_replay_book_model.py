"""The exchange's book model: a bounded level book, and Binance's rules for moving it by diffs."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from cryptopipe.replay.book import LevelBook, SymbolBook

prices = st.integers(1, 60).map(lambda p: f"{p}.00000000")


def diffs_of(quantities: st.SearchStrategy[str]) -> st.SearchStrategy[list[tuple[list[Any], list[Any]]]]:
    side = st.lists(st.tuples(prices, quantities), max_size=8)
    return st.lists(st.tuples(side, side), max_size=40)


@settings(max_examples=80, deadline=None)
@given(data=st.data(), removals=st.booleans(), cap=st.integers(1, 12))
def test_a_bounded_book_shows_the_top_levels_of_an_unbounded_one(
    data: st.DataObject, removals: bool, cap: int
) -> None:
    """Exact whenever it can be: with removals, below the cap; without, the cut levels stay below
    the top, since a level only ever moves down (Binance's warning about levels out of depth)."""
    quantities = st.sampled_from(["0.00000000", "0", "1.00000000", "2.5"] if removals else ["1.0", "2.5"])
    cap = 80 if removals else cap  # 60 prices: nothing is ever cut
    book = LevelBook(0, max_levels=cap)
    reference: dict[str, dict[Decimal, str]] = {"bids": {}, "asks": {}}
    for update_id, (bids, asks) in enumerate(data.draw(diffs_of(quantities)), 1):
        book.apply(bids, asks, update_id)
        for side, changes in (("bids", bids), ("asks", asks)):
            for price, quantity in changes:
                if Decimal(quantity):
                    reference[side][Decimal(price)] = quantity
                else:
                    reference[side].pop(Decimal(price), None)
        assert len(book.bids) <= cap + cap // 4
        assert len(book.asks) <= cap + cap // 4
        top_bids, top_asks = book.top(cap)
        assert [(Decimal(p), q) for p, q in top_bids] == sorted(reference["bids"].items(), reverse=True)[:cap]
        assert [(Decimal(p), q) for p, q in top_asks] == sorted(reference["asks"].items())[:cap]
        assert book.update_id == update_id


def test_diffs_wait_for_the_snapshot_old_ones_are_dropped_and_a_gap_unknowns_the_book() -> None:
    state = SymbolBook("BTCUSDT")
    state.on_diff(5, 9, [("10.0", "1")], [])  # before the snapshot: buffered
    state.on_diff(10, 12, [("11.0", "1")], [("12.0", "3")])
    assert state.book is None
    state.on_snapshot(10, [("9.0", "2")], [("13.0", "1")])
    assert state.book is not None
    assert state.book.update_id == 12  # 5..9 dropped (u <= 10); 10..12 applied (U <= 11 <= u)
    assert state.book.top(5) == ([("11.0", "1"), ("9.0", "2")], [("12.0", "3"), ("13.0", "1")])
    state.on_diff(8, 12, [("1.0", "1")], [])  # already in the book: ignored
    assert state.book.update_id == 12
    state.on_diff(14, 15, [], [])  # 13 is missing: a gap
    assert (state.book, state.gaps) == (None, 1)
    state.on_diff(1, 3, [("5.0", "1")], [])  # a book built from nothing starts over
    assert state.book is not None
    assert state.book.top(1) == ([("5.0", "1")], [])
