"""The local order book and Binance's sync procedure, case by case."""

from __future__ import annotations

from decimal import Decimal

import pytest

from cryptopipe.ingest.book import (
    Applied,
    BookReset,
    BookSync,
    Buffered,
    Dropped,
    OrderBook,
    ResyncStarted,
    SnapshotIgnored,
    SnapshotNeeded,
    SyncOutput,
    WrongSymbolError,
)
from cryptopipe.schemas import DepthDiff, DepthSnapshot, Level

D = Decimal


def levels(*pairs: tuple[int | str, int | str]) -> tuple[Level, ...]:
    return tuple((D(price), D(qty)) for price, qty in pairs)


def diff(first: int, final: int, bids: tuple[Level, ...] = (), asks: tuple[Level, ...] = ()) -> DepthDiff:
    return DepthDiff(
        symbol="BTCUSDT",
        first_update_id=first,
        final_update_id=final,
        event_time_us=final * 1000,
        bids=bids,
        asks=asks,
    )


def snapshot(
    last_id: int, bids: tuple[Level, ...] = levels((99, 1)), asks: tuple[Level, ...] = levels((101, 1))
) -> DepthSnapshot:
    return DepthSnapshot(symbol="BTCUSDT", last_update_id=last_id, bids=bids, asks=asks)


def kinds(outputs: list[SyncOutput]) -> list[str]:
    return [type(output).__name__ for output in outputs]


def test_order_book_sets_removes_and_reads_the_touch() -> None:
    book = OrderBook("X", 10, bids=levels((99, 1), (98, 2), (97, "0")), asks=levels((101, 3), (102, 4)))
    assert len(book) == 4
    assert book.best_bid() == (D(99), D(1))
    book.apply(diff(11, 12, bids=levels((99, 0), (100, 5), (50, 0)), asks=levels((101, "3.5"))))
    assert book.update_id == 12
    assert book.event_time_us == 12000
    assert book.best_bid() == (D(100), D(5))
    assert book.best_ask() == (D(101), D("3.5"))
    assert dict(book.bids) == {D(100): D(5), D(98): D(2)}
    top = book.top(1)
    assert (top.last_update_id, top.bids, top.asks) == (12, levels((100, 5)), levels((101, "3.5")))
    assert book.top(5).bids == levels((100, 5), (98, 2))
    assert book.top(0).bids == ()
    assert not book.is_crossed()
    book.apply(diff(13, 13, bids=levels((101, 1))))
    assert book.is_crossed()
    assert OrderBook("X", 0).best_bid() is None


def test_initial_sync_buffers_asks_once_drops_the_old_and_applies_the_rest() -> None:
    sync = BookSync("BTCUSDT")
    assert kinds(sync.on_diff(diff(90, 100))) == ["Buffered", "SnapshotNeeded"]
    assert sync.on_diff(diff(101, 105)) == [Buffered("BTCUSDT", 105, 2)]
    assert sync.on_diff(diff(106, 110, bids=levels((99, 7)))) == [Buffered("BTCUSDT", 110, 3)]
    assert sync.book is None
    outputs = sync.on_snapshot(snapshot(107))
    assert outputs == [
        Dropped("BTCUSDT", "older_than_snapshot", 2),
        BookReset("BTCUSDT", 107),
        Applied(diff(106, 110, bids=levels((99, 7)))),
    ]
    assert sync.book is not None
    assert sync.book.update_id == 110
    assert sync.book.best_bid() == (D(99), D(7))
    assert sync.on_diff(diff(111, 111)) == [Applied(diff(111, 111))]
    assert sync.on_diff(diff(105, 111)) == [Dropped("BTCUSDT", "older_than_snapshot", 1)]
    counters = sync.counters
    assert (counters.fed, counters.applied, counters.skipped_older_than_snapshot) == (5, 2, 3)
    assert counters.balanced()
    assert counters.snapshot_requests == {"initial": 1}


def test_a_snapshot_older_than_the_buffer_is_fetched_again() -> None:
    sync = BookSync("BTCUSDT")
    sync.on_diff(diff(100, 110))
    assert sync.on_snapshot(snapshot(98)) == [SnapshotNeeded("BTCUSDT", "stale_snapshot")]
    assert sync.book is None
    assert sync.counters.buffered == 1
    assert kinds(sync.on_snapshot(snapshot(99))) == ["BookReset", "Applied"]
    assert sync.counters.snapshot_requests == {"initial": 1, "stale_snapshot": 1}


def test_a_gap_discards_the_book_and_the_resync_gap_is_counted() -> None:
    sync = BookSync("BTCUSDT")
    sync.on_snapshot(snapshot(10))
    sync.on_diff(diff(11, 12))
    assert sync.on_diff(diff(15, 16)) == [
        ResyncStarted("BTCUSDT", "gap", book_update_id=12, first_update_id=15),
        SnapshotNeeded("BTCUSDT", "resync"),
        Buffered("BTCUSDT", 16, 1),
    ]
    assert sync.book is None
    sync.on_diff(diff(17, 20))
    assert sync.on_snapshot(snapshot(18)) == [
        Dropped("BTCUSDT", "resync_gap", 1),
        BookReset("BTCUSDT", 18),
        Applied(diff(17, 20)),
    ]
    counters = sync.counters
    assert counters.resyncs == {"gap": 1}
    assert (counters.applied, counters.in_resync_gap, counters.buffered) == (2, 1, 0)
    assert counters.balanced()


def test_a_snapshot_taken_with_nothing_buffered_is_stale_if_the_next_event_does_not_follow() -> None:
    sync = BookSync("BTCUSDT")
    assert kinds(sync.on_snapshot(snapshot(10))) == ["BookReset"]
    outputs = sync.on_diff(diff(20, 21))
    assert outputs[0] == ResyncStarted("BTCUSDT", "stale_snapshot", book_update_id=10, first_update_id=20)


def test_a_crossed_book_is_resynced() -> None:
    sync = BookSync("BTCUSDT")
    sync.on_diff(diff(5, 5))
    sync.on_snapshot(snapshot(5))
    assert sync.on_diff(diff(6, 6, bids=levels((101, 1)))) == [
        Applied(diff(6, 6, bids=levels((101, 1)))),
        ResyncStarted("BTCUSDT", "crossed", book_update_id=6, first_update_id=6),
        SnapshotNeeded("BTCUSDT", "resync"),
    ]
    assert sync.book is None
    sync.on_diff(diff(7, 7))
    crossed = snapshot(7, bids=levels((102, 1)))
    assert kinds(sync.on_snapshot(crossed)) == ["Dropped", "BookReset", "ResyncStarted", "SnapshotNeeded"]
    assert sync.counters.resyncs == {"crossed": 2}


def test_a_snapshot_while_live_is_ignored_and_resync_can_be_asked_for() -> None:
    sync = BookSync("BTCUSDT")
    sync.on_snapshot(snapshot(5))
    assert sync.on_snapshot(snapshot(9)) == [SnapshotIgnored("BTCUSDT", 9)]
    assert kinds(sync.resync()) == ["ResyncStarted", "SnapshotNeeded"]
    assert sync.resync() == []  # a snapshot is already wanted
    assert sync.awaiting_snapshot
    assert sync.counters.resyncs == {"requested": 1}


def test_the_buffer_stays_contiguous_and_bounded() -> None:
    sync = BookSync("BTCUSDT", max_buffered=2)
    sync.on_diff(diff(1, 2))
    assert sync.on_diff(diff(2, 2)) == [Dropped("BTCUSDT", "older_than_snapshot", 1)]
    assert sync.on_diff(diff(5, 6)) == [Dropped("BTCUSDT", "resync_gap", 1), Buffered("BTCUSDT", 6, 1)]
    sync.on_diff(diff(6, 7))  # overlapping is fine
    assert sync.on_diff(diff(8, 8)) == [Dropped("BTCUSDT", "resync_gap", 1), Buffered("BTCUSDT", 8, 2)]
    counters = sync.counters
    assert (counters.buffered, counters.in_resync_gap, counters.buffer_gaps) == (2, 2, 1)
    assert counters.balanced()


def test_another_symbols_data_is_a_wiring_error() -> None:
    sync = BookSync("ETHUSDT")
    with pytest.raises(WrongSymbolError) as info:
        sync.on_diff(diff(1, 1))
    assert (info.value.expected, info.value.got) == ("ETHUSDT", "BTCUSDT")
    with pytest.raises(WrongSymbolError):
        sync.on_snapshot(snapshot(1))
    with pytest.raises(ValueError, match="max_buffered"):
        BookSync("ETHUSDT", max_buffered=0)
