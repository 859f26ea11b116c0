"""Order books end to end: the replay exchange's depth streams and REST depth in, the book contract out.

A consumer of ``book-updates`` alone (and of each ``book-snapshots`` checkpoint) must rebuild the
exact book: every recorded bookTicker whose update id an update record reaches shows the rebuilt
book's best bid and ask, every resync is a ``reset``, and ingest's books balance.
"""

from __future__ import annotations

import gzip
import json
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cryptopipe.infra.testing import eventually
from cryptopipe.ingest.testing import RunningIngest
from cryptopipe.replay.testing import count_stream_lines, real_data_file
from cryptopipe.schemas import (
    BOOK_SNAPSHOTS,
    BOOK_UPDATES,
    BookTicker,
    KafkaSettings,
    OrderBook,
    binance,
    decode_book_ticker,
    decode_depth_snapshot,
)
from cryptopipe.schemas.book_messages import (
    BookCheckpoint,
    BookResetRecord,
    continuity,
    decode_book_checkpoint,
    decode_book_record,
)
from cryptopipe.schemas.topics import java_partition

pytestmark = pytest.mark.slow


@dataclass
class Rebuilt:
    """What a consumer of book-updates saw, per symbol."""

    books: dict[str, OrderBook] = field(default_factory=dict)
    resets: list[BookResetRecord] = field(default_factory=list)
    updates: int = 0
    #: (symbol, update id) -> (best bid, best ask) after the update that reached it.
    touches: dict[tuple[str, int], tuple[Any, Any]] = field(default_factory=dict)
    #: (partition, offset) -> the symbol's whole book right after that record.
    after: dict[tuple[int, int], OrderBook] = field(default_factory=dict)
    crossed: int = 0


def copy(book: OrderBook) -> OrderBook:
    top = book.top(len(book))
    return OrderBook(book.symbol, book.update_id, top.bids, top.asks, book.event_time_us)


def rebuild(records: Iterable[tuple[bytes, int, int]], *, keep_books: bool = False) -> Rebuilt:
    """Apply book-updates in order (value, partition, offset): a reset starts a book, updates follow it."""
    out = Rebuilt()
    epochs: dict[str, int] = {}
    for value, partition, offset in records:
        record = decode_book_record(value)
        if isinstance(record, BookResetRecord):
            assert record.epoch > epochs.get(record.symbol, 0), "epochs grow"
            epochs[record.symbol] = record.epoch
            out.resets.append(record)
            book = out.books[record.symbol] = OrderBook(
                record.symbol, record.update_id, record.bids, record.asks
            )
        else:
            assert record.epoch == epochs[record.symbol], "an update belongs to the last reset's epoch"
            book = out.books[record.symbol]
            assert continuity(book.update_id, record) == "next", (book.update_id, record.first_update_id)
            book.apply(record)
            out.updates += 1
            out.touches[(record.symbol, record.final_update_id)] = (book.best_bid(), book.best_ask())
        out.crossed += book.is_crossed()
        if keep_books:
            out.after[(partition, offset)] = copy(book)
    return out


def recorded_tickers(path: Path) -> list[BookTicker]:
    tickers = []
    with gzip.open(path, "rb") as lines:
        for line in lines:
            payload = line.split(b" ", 1)[1]
            if payload.startswith(b'{"lastUpdateId"'):
                continue
            frame = binance.split_frame(payload)
            if frame.stream.endswith("@bookTicker"):
                tickers.append(decode_book_ticker(frame.data))
    return tickers


def tickers_matched(path: Path, symbol: str, rebuilt: Rebuilt) -> int:
    """Every recorded ticker whose update id an update reached shows the rebuilt touch; how many did."""
    same_id = [t for t in recorded_tickers(path) if (symbol, t.update_id) in rebuilt.touches]
    for ticker in same_id:
        touch = rebuilt.touches[(symbol, ticker.update_id)]
        assert touch == ((ticker.bid_price, ticker.bid_quantity), (ticker.ask_price, ticker.ask_quantity))
    return len(same_id)


def read_all(reader: Any, count: int) -> list[tuple[bytes, int, int]]:
    """The topic's ``count`` records (value, partition, offset), once they are all there."""
    eventually(
        lambda: reader.poll() >= count, timeout=30, message=f"fewer than {count} records on {reader.topic}"
    )
    assert len(reader.records) == count
    return [(value, p, offset) for (_k, value, p), offset in zip(reader.records, reader.offsets, strict=True)]


def settle(ingest: RunningIngest, depth_events: int) -> None:
    """Wait until ingest took every depth event and the broker acknowledged every book record."""
    eventually(lambda: ingest.stats.book_events == depth_events, timeout=90, message="depth events missing")
    publisher = ingest.ingest._publisher
    assert publisher is not None
    eventually(lambda: publisher.outstanding_trades == 0, timeout=30, message="unacknowledged records")


def assert_books_balance(ingest: RunningIngest) -> None:
    stats = ingest.stats
    accounted = (
        stats.book_events_applied
        + stats.book_events_skipped
        + stats.book_events_in_resync_gap
        + stats.book_events_buffered
    )
    assert stats.book_events == accounted, stats
    assert stats.book_records_lost == 0


def test_a_recording_rebuilds_from_kafka_with_every_book_ticker_matching(
    kafka_settings: KafkaSettings, replay_exchange_factory: Any, run_ingest: Any, topic_reader: Any
) -> None:
    path = real_data_file("btcusdt_20240808.gz")
    depth_events = count_stream_lines(path, "@depth@100ms")
    exchange = replay_exchange_factory(replay_files=(str(path),), speed=40)
    ingest = run_ingest(
        kafka_settings,
        exchange,
        symbols="btcusdt",
        mode="trade",
        depth="100ms",
        book_checkpoint_interval_s=1.0,
    )
    assert exchange.wait_finished(120), "replay did not finish"
    settle(ingest, depth_events)
    ingest.stop()
    stats = ingest.stats
    assert_books_balance(ingest)
    assert (stats.book_resyncs, stats.book_snapshots_used, stats.book_events_buffered) == (0, 1, 0)
    assert stats.book_events_applied > depth_events // 2, "the book went live early in the recording"
    assert stats.book_ticker_mismatches == 0
    assert stats.book_ticker_checks > 300, "the live check compared hundreds of tickers"

    update_records = stats.book_snapshots_used + stats.book_events_applied
    updates = read_all(topic_reader(BOOK_UPDATES), update_records)
    rebuilt = rebuild(updates, keep_books=True)
    assert [r.reason for r in rebuilt.resets] == ["initial"]
    assert rebuilt.updates == stats.book_events_applied
    assert rebuilt.crossed == 0
    assert tickers_matched(path, "BTCUSDT", rebuilt) > 300
    partitions = {p for _v, p, _o in updates}
    assert partitions == {java_partition(b"BTCUSDT", ingest.ingest.settings.topic_partitions)}

    written = read_all(topic_reader(BOOK_SNAPSHOTS), stats.book_records_published - update_records)
    checkpoints = [decode_book_checkpoint(v) for v, _p, _o in written]
    assert len(checkpoints) >= 2, "one after the reset, then every second"
    for checkpoint in checkpoints:
        assert_checkpoint_matches(checkpoint, rebuilt)


def assert_checkpoint_matches(checkpoint: BookCheckpoint, rebuilt: Rebuilt) -> None:
    """The checkpoint's book is the one a consumer holds right before its ``updates_offset``."""
    book = rebuilt.after[(checkpoint.updates_partition, checkpoint.updates_offset - 1)]
    assert book.update_id == checkpoint.update_id
    top = book.top(len(book))
    assert (top.bids, top.asks) == (checkpoint.bids, checkpoint.asks)


def test_gaps_failed_and_stale_snapshots_end_in_counted_resyncs_and_exact_books(
    kafka_settings: KafkaSettings, replay_exchange_factory: Any, run_ingest: Any, topic_reader: Any
) -> None:
    """Every 700th depth event is not sent (a gap each time); the first two snapshots fail and the
    next is older than the stream. Each gap is a counted resync and a new reset, and the rebuilt
    book still shows every ticker with the same update id."""
    path = real_data_file("ethusdt_20240808.gz")
    depth_events = count_stream_lines(path, "@depth@100ms")
    exchange = replay_exchange_factory(
        replay_files=(str(path),),
        speed=40,
        depth_drop_every=700,
        depth_snapshot_fail=2,
        depth_snapshot_stale=1,
    )
    ingest = run_ingest(kafka_settings, exchange, symbols="ethusdt", mode="trade", depth="100ms")
    assert exchange.wait_finished(120), "replay did not finish"
    dropped = depth_events // 700
    settle(ingest, depth_events - dropped)
    ingest.stop()
    stats = ingest.stats
    assert_books_balance(ingest)
    assert stats.book_ticker_mismatches == 0
    assert stats.book_resyncs >= dropped - 1, "each dropped event a gap (one may fall before the first book)"
    updates = read_all(topic_reader(BOOK_UPDATES), stats.book_snapshots_used + stats.book_events_applied)
    rebuilt = rebuild(updates)
    assert len(rebuilt.resets) == stats.book_snapshots_used == stats.book_resyncs + 1
    assert {r.reason for r in rebuilt.resets[1:]} <= {"gap", "stale_snapshot"}
    assert rebuilt.crossed == 0
    assert tickers_matched(path, "ETHUSDT", rebuilt) > 100
    assert exchange.stats.depth_snapshots_failed >= 2
    assert exchange.stats.depth_snapshots_stale == 1


def rest_depth(exchange: Any, symbol: str, limit: int) -> Any:
    url = f"{exchange.rest_url}/api/v3/depth?symbol={symbol}&limit={limit}"
    with urllib.request.urlopen(url, timeout=10) as resp:
        return decode_depth_snapshot(resp.read(), symbol=symbol)


def test_symbols_all_syncs_every_trading_symbol_of_a_synthetic_market(
    kafka_settings: KafkaSettings, replay_exchange_factory: Any, run_ingest: Any, topic_reader: Any
) -> None:
    """INGEST_SYMBOLS=all over a synthetic market with order books, two symbols per connection; at the
    end each book (ingest's and the one rebuilt from Kafka) equals the exchange's REST depth."""
    exchange = replay_exchange_factory(
        symbols=("BTCUSDT", "ETHUSDT", "BNBUSDT"), market_size=5, book=True, rate=400, count=3000, speed="max"
    )
    listed = json.loads(urllib.request.urlopen(f"{exchange.rest_url}/api/v3/exchangeInfo", timeout=10).read())
    trading = sorted(s["symbol"] for s in listed["symbols"] if s["status"] == "TRADING")
    ingest = run_ingest(kafka_settings, exchange, symbols="all", depth="100ms", streams_per_connection=6)
    eventually(lambda: len(ingest.ingest.shards) > 0, timeout=30, message="no symbols resolved")
    assert sorted(ingest.ingest.symbols) == trading
    assert len(ingest.ingest.shards) == -(-len(trading) // 2)
    assert exchange.wait_finished(120), "replay did not finish"
    books = ingest.ingest.books
    assert books is not None
    eventually(
        lambda: all(books.book(s) is not None for s in trading), timeout=60, message="a book never went live"
    )
    eventually(lambda: ingest.ingest._publisher.outstanding_trades == 0, timeout=30, message="unacknowledged")
    for symbol in trading:
        book = books.book(symbol)
        assert book is not None
        exchange_top = rest_depth(exchange, symbol, 20)
        assert book.top(20) == exchange_top, f"{symbol}: ingest's book is the exchange's"
    ingest.stop()
    assert_books_balance(ingest)
    assert ingest.stats.book_ticker_mismatches == 0
    stats = ingest.stats
    rebuilt = rebuild(
        read_all(topic_reader(BOOK_UPDATES), stats.book_snapshots_used + stats.book_events_applied)
    )
    for symbol in trading:
        assert rebuilt.books[symbol].top(20) == rest_depth(exchange, symbol, 20), f"{symbol}: Kafka's book"


def last_depth_id(path: Path) -> int:
    last = 0
    with gzip.open(path, "rb") as lines:
        for line in lines:
            payload = line.split(b" ", 1)[1]
            if b"@depth" in payload[:40]:
                last = json.loads(payload)["data"]["u"]
    return last


def test_a_dropped_connection_ends_in_a_counted_resync_and_an_exact_book(
    kafka_settings: KafkaSettings, replay_exchange_factory: Any, run_ingest: Any, topic_reader: Any
) -> None:
    """The exchange goes dark after 15,000 frames per connection: ingest reconnects, the depth stream
    has skipped ids, the book resyncs (reason gap) and is exact again up to the recording's end."""
    path = real_data_file("btcusdt_20240808.gz")
    exchange = replay_exchange_factory(replay_files=(str(path),), speed=40, drop_after=15_000)
    ingest = run_ingest(kafka_settings, exchange, symbols="btcusdt", mode="trade", depth="100ms")
    assert exchange.wait_finished(120), "replay did not finish"
    books = ingest.ingest.books
    assert books is not None
    end = last_depth_id(path)
    eventually(lambda: (book := books.book("BTCUSDT")) is not None and book.update_id == end, timeout=60)
    eventually(lambda: ingest.ingest._publisher.outstanding_trades == 0, timeout=30, message="unacknowledged")
    ingest.stop()
    stats = ingest.stats
    assert stats.reconnects >= 1
    assert stats.book_resyncs >= 1
    assert_books_balance(ingest)
    assert stats.book_ticker_mismatches == 0
    updates = read_all(topic_reader(BOOK_UPDATES), stats.book_snapshots_used + stats.book_events_applied)
    rebuilt = rebuild(updates)
    assert [r.reason for r in rebuilt.resets][:2] == ["initial", "gap"]
    assert rebuilt.books["BTCUSDT"].update_id == end
    assert tickers_matched(path, "BTCUSDT", rebuilt) > 300
