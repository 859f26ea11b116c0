"""`cryptopipe bench books`: its figures, on the real servers, with exact books."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from cryptopipe.measure.bench_books import holds_the_same_levels, memory_per_book_bytes, resync_seconds
from cryptopipe.schemas import DepthSnapshot, OrderBook
from cryptopipe.schemas.book_messages import BookResetRecord, BookUpdateRecord

_BOOK = {"bids": ((Decimal("100"), Decimal("1")),), "asks": ((Decimal("101"), Decimal("1")),)}


def _reset(symbol: str, receive_us: int, update_id: int) -> BookResetRecord:
    return BookResetRecord(
        symbol=symbol,
        epoch=1,
        reason="initial",
        update_id=update_id,
        event_time_us=receive_us,
        receive_time_us=receive_us,
        **_BOOK,
    )


def _update(symbol: str, receive_us: int, update_id: int) -> BookUpdateRecord:
    return BookUpdateRecord(
        symbol=symbol,
        epoch=1,
        first_update_id=update_id,
        final_update_id=update_id,
        event_time_us=receive_us,
        receive_time_us=receive_us,
        bids=(),
        asks=(),
    )


def test_a_resync_lasts_from_the_last_update_to_the_reset() -> None:
    records = [
        _reset("BTCUSDT", 0, 10),  # the first reset of a symbol is its start, not a resync
        _update("BTCUSDT", 1_000_000, 11),
        _update("ETHUSDT", 1_100_000, 5),
        _reset("BTCUSDT", 1_750_000, 20),  # out of the stream from 1.0 s to 1.75 s
    ]
    assert resync_seconds(records) == [0.75]


def test_a_book_of_a_thousand_levels_is_measured_in_bytes() -> None:
    levels = tuple((Decimal(100 + i), Decimal("0.5")) for i in range(1000))
    snapshot = DepthSnapshot(symbol="BTCUSDT", last_update_id=1, bids=levels[499::-1], asks=levels[500:])
    per_book = memory_per_book_bytes(snapshot)
    assert 1000 * 20 < per_book < 1000 * 2000  # tens to hundreds of bytes a level, not nothing


def test_a_thin_side_does_not_cut_the_other_short_in_the_check() -> None:
    """A quiet symbol's book: 2 bids and 5 asks; Redis keeps the top 3 per side (2 bids, 3 asks)."""

    def level(price: str) -> tuple[Decimal, Decimal]:
        return Decimal(price), Decimal("1")

    asks = tuple(level(p) for p in ("10.1", "10.2", "10.3", "10.4", "10.5"))
    book = OrderBook.from_snapshot(
        DepthSnapshot(symbol="aakusdt", last_update_id=7, bids=(level("9.9"), level("9.8")), asks=asks)
    )
    held_bids, held_asks = (level("9.9"), level("9.8")), asks[:3]
    assert holds_the_same_levels(book, held_bids, held_asks)
    assert not holds_the_same_levels(book, held_bids, (*asks[:2], level("10.4")))  # a level differs
    assert not holds_the_same_levels(book, held_bids[:1], held_asks)  # a bid missing


@pytest.mark.slow
def test_bench_books_reports_exact_books_latency_and_resyncs(run_bench: Any) -> None:
    _, figures = run_bench(
        "books", "--rate", "200", "--duration", "8", "--gap-every", "40", "--gap-seconds", "8",
        "--ladder", "200", "--step-seconds", "5", "--floor-samples", "50",
        timeout=600,
    )  # fmt: skip
    assert figures["books_exact"] is True
    assert figures["books_checked"] >= 2
    assert figures["unwritten"] == 0
    assert figures["book_ticker_mismatches"] == 0
    latency = figures["book_update_latency_ms"]
    assert latency["p50"] is not None
    assert latency["p50"] <= latency["p99"]
    assert figures["floor_broker_rtt_ms"]["p99"] is not None
    assert figures["resyncs"] > 0  # the exchange dropped depth events: each gap is a counted resync
    assert figures["resync_s"]["p50"] is not None
    assert figures["resync_s"]["p50"] <= figures["resync_s"]["max"]
    assert figures["max_sustained_msgs_per_s"] > 0
    assert figures["memory_per_book_bytes"] > 0
    assert {"ingest", "books-consumer", "replay-exchange"} <= set(figures["cpu_us_per_msg"])
