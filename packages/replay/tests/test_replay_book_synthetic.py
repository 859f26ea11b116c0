"""The synthetic order book: trades at the touch consume levels, the book is never crossed, and one
update id counter per symbol lines up depth@100ms, @depth, bookTicker and ``/api/v3/depth``."""

from __future__ import annotations

import itertools
import json
import random
import urllib.error
import urllib.request
from collections import Counter
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from cryptopipe.replay.book import LevelBook
from cryptopipe.replay.sources import RawFrame, SyntheticSource, TradeRecord
from cryptopipe.replay.sources.base import DepthRecord
from cryptopipe.replay.sources.synthetic_book import MAX_LEVELS, MIN_LEVELS, SyntheticBook
from cryptopipe.replay.symbols import symbol_spec
from cryptopipe.replay.testing import ReplayExchangeFactory
from cryptopipe.schemas import decode_depth_snapshot

TIMEOUT = 60.0


def get(url: str) -> tuple[int, Any, dict[str, str]]:
    try:
        with urllib.request.urlopen(url) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), dict(exc.headers)


def check_book(book: SyntheticBook) -> None:
    assert book.best_bid == max(book.bids)
    assert book.best_ask == min(book.asks)
    assert book.best_bid < book.best_ask  # never crossed
    assert MIN_LEVELS <= len(book.bids) <= MAX_LEVELS
    assert MIN_LEVELS <= len(book.asks) <= MAX_LEVELS


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    operations=st.lists(st.tuples(st.booleans(), st.booleans(), st.integers(1, 100_000)), max_size=300),
)
def test_trades_take_the_touch_and_consume_what_they_fill(
    seed: int, operations: list[tuple[bool, bool, int]]
) -> None:
    rng = random.Random(seed)
    book = SyntheticBook("XRPUSDT", symbol_spec("XRPUSDT"), rng)
    for is_trade, buyer_is_maker, lots in operations:
        if not is_trade:
            book.change(rng)
        else:
            side = book.bids if buyer_is_maker else book.asks
            touch = book.best_bid if buyer_is_maker else book.best_ask
            before = side[touch]
            ids = book.update_id
            tick, filled = book.trade(buyer_is_maker, lots)
            assert tick == touch
            assert filled == min(lots, before)
            assert side.get(tick, 0) == before - filled  # consumed (a level emptied is gone)
            assert book.update_id > ids
        check_book(book)


def by_symbol(events: list[Any], kind: type) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for event in events:
        if isinstance(event, RawFrame) and kind is RawFrame:
            out.setdefault(event.stream.split("@")[0].upper(), []).append(event)
        elif isinstance(event, kind) and not isinstance(event, RawFrame):
            out.setdefault(event.symbol, []).append(event)  # type: ignore[attr-defined]
    return out


def test_update_ids_line_up_across_depth_streams_and_book_ticker() -> None:
    source = SyntheticSource(
        ["BTCUSDT", "XRPUSDT"], rate=5.0, seed=4, count=400, book=True, changes_per_trade=1.0, burst=False
    )
    events = list(source.events())
    diffs = by_symbol(events, DepthRecord)
    tickers = by_symbol(events, RawFrame)
    for symbol, records in diffs.items():
        for interval in (100, 1000):
            chain = [r for r in records if r.interval_ms == interval]
            assert chain[0].first_id == 1
            for before, after in itertools.pairwise(chain):
                assert after.first_id == before.final_id + 1  # contiguous: no update lost
                assert after.event_time_us > before.event_time_us
        fast = LevelBook(0)
        slow = LevelBook(0)
        ticker_at = {json.loads(t.data)["u"]: json.loads(t.data) for t in tickers[symbol]}
        matched = 0
        for record in records:
            book = fast if record.interval_ms == 100 else slow
            book.apply(record.bids, record.asks, record.final_id)
            if record.interval_ms == 1000:  # the 1 s diffs add up to the 100 ms ones
                assert fast.update_id == slow.update_id
                assert fast.top(MAX_LEVELS) == slow.top(MAX_LEVELS)
            ticker = ticker_at.get(record.final_id)
            if ticker is not None and record.interval_ms == 100:
                (bid, bid_qty), (ask, ask_qty) = fast.best()  # type: ignore[misc]
                assert (bid, bid_qty, ask, ask_qty) == (ticker["b"], ticker["B"], ticker["a"], ticker["A"])
                assert Decimal(bid) < Decimal(ask)
                matched += 1
        assert matched >= 20, (symbol, matched)


def test_trades_happen_at_the_touch_the_book_ticker_showed() -> None:
    events = list(SyntheticSource(["ETHUSDT"], rate=50.0, seed=9, count=2000, book=True).events())
    touch: dict[str, Any] | None = None
    for event in events:
        if isinstance(event, RawFrame):
            touch = json.loads(event.data)
        elif isinstance(event, TradeRecord) and touch is not None:
            hit = touch["b"] if event.buyer_is_maker else touch["a"]
            shown = touch["B"] if event.buyer_is_maker else touch["A"]
            assert event.price == Decimal(hit)
            assert event.qty <= Decimal(shown)


def test_rest_depth_is_the_book_the_streams_built(replay_exchange_factory: ReplayExchangeFactory) -> None:
    params: dict[str, Any] = {"symbols": ("BTCUSDT", "ETHUSDT"), "rate": 500.0, "seed": 3, "count": 3000}
    ex = replay_exchange_factory(**params, book=True, speed="max", start_on_subscribe=False)
    assert ex.wait_finished(TIMEOUT)
    expected = LevelBook(0)
    for event in SyntheticSource(params.pop("symbols"), **params, book=True).events():
        if isinstance(event, DepthRecord) and event.symbol == "ETHUSDT" and event.interval_ms == 100:
            expected.apply(event.bids, event.asks, event.final_id)
    status, body, headers = get(f"{ex.rest_url}/api/v3/depth?symbol=ETHUSDT&limit=20")
    assert status == 200
    assert body["lastUpdateId"] == expected.update_id
    assert (body["bids"], body["asks"]) == tuple(list(map(list, side)) for side in expected.top(20))
    assert headers["X-MBX-USED-WEIGHT-1M"] == "5"
    # the same book, typed, for checks that spend no weight
    assert ex.book("ethusdt", 20) == decode_depth_snapshot(json.dumps(body), symbol="ETHUSDT")
    assert ex.book("DOGEUSDT") is None


def test_the_whole_market_is_skewed_and_lists_symbols_that_are_not_trading(
    replay_exchange_factory: ReplayExchangeFactory,
) -> None:
    source = SyntheticSource(["BTCUSDT"], rate=1000.0, seed=1, count=20_000, market_size=1500, book=False)
    assert len(source.symbols) == 1500
    assert len(source.inactive_symbols) == 15
    trades = Counter(e.symbol for e in source.events() if isinstance(e, TradeRecord))
    shares = [n / 20_000 for _, n in trades.most_common()]
    assert 0.10 < shares[0] < 0.16  # Zipf(1) over 1,500: the busiest has 1/H(1500) ~ 12.6%
    assert trades["BTCUSDT"] == max(trades.values())  # the symbols named come first
    assert sum(shares[:15]) > 0.4
    assert len(trades) < 1500
    ex = replay_exchange_factory(market_size=150, book=True, start_on_subscribe=False)
    _, info, _ = get(f"{ex.rest_url}/api/v3/exchangeInfo")
    statuses = Counter(s["status"] for s in info["symbols"])
    assert statuses == {"TRADING": 150, "BREAK": 1}
    (halted,) = [s["symbol"] for s in info["symbols"] if s["status"] != "TRADING"]
    status, body, _ = get(f"{ex.rest_url}/api/v3/depth?symbol={halted}")
    assert (status, body) == (200, {"lastUpdateId": 0, "bids": [], "asks": []})
