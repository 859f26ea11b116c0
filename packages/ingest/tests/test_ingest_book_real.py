"""BookSync on real Binance recordings: the rebuilt book shows every matching bookTicker's touch.

Each ``*_20240808.gz`` holds one REST depth snapshot near its start beside the ``depth@100ms`` diffs
and ``bookTicker`` frames; ``*_20240809.gz`` continues the depth stream without a gap. Wherever a
bookTicker frame's ``u`` equals an applied diff's final ``u``, both describe the same book state, so
the book's best bid and ask (price and quantity) must be the frame's.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cryptopipe.ingest.book import Applied, BookSync, SyncOutput
from cryptopipe.replay.testing import real_data_file
from cryptopipe.schemas import (
    BookTicker,
    Level,
    binance,
    decode_book_ticker,
    decode_depth_snapshot,
    decode_depth_update,
)


@dataclass
class Replay:
    """What one recording did to a BookSync."""

    #: Best bid and ask right after each applied diff, by its final update id.
    touches: dict[int, tuple[Level | None, Level | None]] = field(default_factory=dict)
    tickers: list[BookTicker] = field(default_factory=list)
    #: Every output but Applied, in order.
    others: list[SyncOutput] = field(default_factory=list)
    first_diff_ids: list[int] = field(default_factory=list)
    crossed: int = 0

    def matches(self) -> list[tuple[BookTicker, tuple[Level | None, Level | None]]]:
        return [(t, self.touches[t.update_id]) for t in self.tickers if t.update_id in self.touches]


def _feed(sync: BookSync, raw: bytes, replay: Replay) -> list[SyncOutput]:
    """One recorded line's frame into the sync machine (or the tickers); the outputs it gave."""
    if raw.startswith(b'{"lastUpdateId"'):
        return sync.on_snapshot(decode_depth_snapshot(raw, symbol=sync.symbol))
    frame = binance.split_frame(raw)
    if frame.stream.endswith("@bookTicker"):
        replay.tickers.append(decode_book_ticker(frame.data))
    elif frame.stream.endswith("@depth@100ms"):
        diff = decode_depth_update(frame.data)
        replay.first_diff_ids.append(diff.first_update_id)
        return sync.on_diff(diff)
    return []


def replay(sync: BookSync, path: Path) -> Replay:
    """Feed a recording's snapshot and depth diffs to ``sync``, noting the book's touch after each diff."""
    result = Replay()
    with gzip.open(path, "rb") as lines:
        for line in lines:
            for output in _feed(sync, line.partition(b" ")[2], result):
                if not isinstance(output, Applied):
                    result.others.append(output)
                    continue
                book = sync.book
                assert book is not None
                result.crossed += book.is_crossed()
                result.touches[output.diff.final_update_id] = (book.best_bid(), book.best_ask())
    return result


def _assert_touches_match(replayed: Replay, expected_matches: int) -> None:
    matches = replayed.matches()
    for ticker, touch in matches:
        bid = (ticker.bid_price, ticker.bid_quantity)
        ask = (ticker.ask_price, ticker.ask_quantity)
        assert touch == (bid, ask), f"book differs from bookTicker at u={ticker.update_id}"
    # Measured on these files (ENVIRONMENT.md gives the same 564 and 577 for 0808); hundreds each.
    assert len(matches) == expected_matches
    assert replayed.crossed == 0


@pytest.mark.parametrize(
    ("symbol", "fed_0808", "matches_0808", "fed_0809", "matches_0809"),
    [("btcusdt", 3451, 564, 3044, 507), ("ethusdt", 3434, 577, 3036, 479)],
)
def test_recorded_books_match_every_book_ticker_with_the_same_update_id(
    symbol: str, fed_0808: int, matches_0808: int, fed_0809: int, matches_0809: int
) -> None:
    first_day, second_day = real_data_file(f"{symbol}_20240808.gz"), real_data_file(f"{symbol}_20240809.gz")
    sync = BookSync(symbol.upper())

    day1 = replay(sync, first_day)
    assert [type(output).__name__ for output in day1.others] == [
        *["Buffered", "SnapshotNeeded"],
        *["Buffered"] * (len(day1.others) - 4),
        *["Dropped", "BookReset"],
    ]
    _assert_touches_match(day1, matches_0808)
    counters = sync.counters
    assert (counters.fed, counters.skipped_older_than_snapshot) == (fed_0808, 2)
    assert counters.applied == fed_0808 - 2
    assert sync.book is not None
    last_id = sync.book.update_id

    day2 = replay(sync, second_day)
    assert day2.first_diff_ids[0] == last_id + 1
    assert day2.others == []  # every diff applied: no gap, no resync
    _assert_touches_match(day2, matches_0809)
    assert (counters.fed, counters.applied) == (fed_0808 + fed_0809, fed_0808 + fed_0809 - 2)
    assert counters.in_resync_gap == counters.buffered == 0
    assert not counters.resyncs
    assert counters.balanced()
