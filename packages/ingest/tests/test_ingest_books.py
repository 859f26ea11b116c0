"""Books without a broker: what each sync output becomes on the contract, losses, and the ticker check."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from prometheus_client import REGISTRY

from cryptopipe.ingest import IngestSettings, IngestStats
from cryptopipe.ingest.books import Books
from cryptopipe.ingest.publisher import Publisher
from cryptopipe.schemas import BookTicker, DepthDiff, DepthSnapshot, KafkaSettings, settings_of
from cryptopipe.schemas.book_messages import (
    BookCheckpoint,
    BookResetRecord,
    BookUpdateRecord,
    decode_book_checkpoint,
    decode_book_record,
)

D = Decimal


@dataclass
class FakeMessage:
    _partition: int
    _offset: int
    _key: bytes

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return self._key


class FakeProducer:
    """Takes records until told to refuse; reports every one delivered on poll, with offsets per topic."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.refuse = False
        self.pending: list[tuple[str, bytes, bytes, Any]] = []
        self.topics: dict[str, list[bytes]] = {}

    def produce(self, topic: str, value: bytes, key: bytes, on_delivery: Any) -> None:
        if self.refuse:
            raise BufferError("full")
        self.pending.append((topic, value, key, on_delivery))

    def poll(self, timeout: float = 0) -> int:
        while self.pending:
            topic, value, key, callback = self.pending.pop(0)
            log = self.topics.setdefault(topic, [])
            log.append(value)
            callback(None, FakeMessage(0, len(log) - 1, key))
        return 0

    def __len__(self) -> int:
        return len(self.pending)


def make_books(checkpoint_interval_s: float = 0.0) -> tuple[Books, FakeProducer, list[str]]:
    producers: list[FakeProducer] = []

    def factory(config: dict[str, Any]) -> FakeProducer:
        producers.append(FakeProducer(config))
        return producers[-1]

    stats = IngestStats()
    publisher = Publisher(
        settings_of(KafkaSettings),
        settings_of(IngestSettings, statistics_interval_ms=0),
        stats,
        prices_topic="prices",
        dead_letter_topic="dead-letters",
        producer_factory=factory,  # type: ignore[arg-type]
    )
    asked: list[str] = []
    books = Books(
        ["btcusdt"],
        stats,
        publisher,
        asked.append,
        updates_topic="book-updates",
        snapshots_topic="book-snapshots",
        max_buffered=100,
        checkpoint_interval_s=checkpoint_interval_s,
    )
    books.prime_metrics()
    return books, producers[0], asked


def diff(first: int, final: int, bid: str = "10", qty: str = "1") -> DepthDiff:
    return DepthDiff(
        symbol="BTCUSDT",
        first_update_id=first,
        final_update_id=final,
        event_time_us=1_000_000 * final,
        bids=((D(bid), D(qty)),),
        asks=(),
    )


SNAPSHOT = DepthSnapshot(
    symbol="BTCUSDT", last_update_id=100, bids=((D("10"), D("2")),), asks=((D("11"), D("3")),)
)


def books_gauge() -> tuple[float | None, float | None]:
    """``cryptopipe_ingest_books`` (live, syncing)."""
    value = REGISTRY.get_sample_value
    return value("cryptopipe_ingest_books", {"state": "live"}), value(
        "cryptopipe_ingest_books", {"state": "syncing"}
    )


def records(producer: FakeProducer) -> list[BookResetRecord | BookUpdateRecord]:
    producer.poll()
    return [decode_book_record(v) for v in producer.topics.get("book-updates", [])]


def checkpoints(producer: FakeProducer) -> list[BookCheckpoint]:
    producer.poll()
    return [decode_book_checkpoint(v) for v in producer.topics.get("book-snapshots", [])]


def test_a_snapshot_becomes_a_reset_then_the_buffered_diffs_updates_and_a_checkpoint_follows() -> None:
    books, producer, asked = make_books()
    books.on_diff(diff(95, 99), 1)  # older than the snapshot: dropped when it comes
    books.on_diff(diff(100, 102, qty="5"), 2)
    assert asked == ["BTCUSDT"]
    books.on_snapshot(SNAPSHOT, 3)
    books.on_diff(diff(103, 104, bid="10.5"), 4)
    got = records(producer)
    assert [type(r).__name__ for r in got] == ["BookResetRecord", "BookUpdateRecord", "BookUpdateRecord"]
    reset, first, second = got
    assert isinstance(reset, BookResetRecord)
    assert (reset.reason, reset.update_id, reset.bids, reset.event_time_us) == (
        "initial",
        100,
        SNAPSHOT.bids,
        None,
    )
    assert first.epoch == second.epoch == reset.epoch
    assert isinstance(first, BookUpdateRecord)
    assert first.receive_time_us == 2, "a buffered diff keeps its own receive time"
    (checkpoint,) = checkpoints(producer)
    assert (checkpoint.update_id, checkpoint.updates_offset, checkpoint.bids) == (100, 1, SNAPSHOT.bids)
    stats = books.stats
    assert (stats.book_events, stats.book_events_applied, stats.book_events_skipped) == (3, 2, 1)
    assert stats.book_records_published == 4


def test_a_periodic_checkpoint_points_after_its_update() -> None:
    books, producer, _ = make_books(checkpoint_interval_s=1e-9)
    books.on_diff(diff(101, 101), 1)
    books.on_snapshot(SNAPSHOT, 2)
    books.on_diff(diff(102, 103, bid="9", qty="4"), 3)
    offsets = {c.update_id: c.updates_offset for c in checkpoints(producer)}
    assert offsets[103] == 3, "reset at 0, updates at 1 and 2: resume at 3"
    last = checkpoints(producer)[-1]
    assert last.bids == ((D("10"), D("1")), (D("9"), D("4")))


def test_an_update_that_cannot_be_produced_resyncs_its_book_with_a_requested_reset() -> None:
    books, producer, asked = make_books()
    books.on_diff(diff(101, 101), 1)
    assert books_gauge() == (0, 1)
    books.on_snapshot(SNAPSHOT, 2)
    assert books_gauge() == (1, 0)
    producer.poll()  # the reset delivered, its checkpoint produced
    producer.refuse = True
    books.on_diff(diff(102, 102), 3)
    producer.refuse = False
    assert books.book("BTCUSDT") is None, "consumers miss an update: the book starts over"
    assert books_gauge() == (0, 1)
    assert asked == ["BTCUSDT", "BTCUSDT"]
    assert books.stats.book_records_lost == 1
    books.on_snapshot(
        DepthSnapshot(symbol="BTCUSDT", last_update_id=102, bids=(), asks=((D("11"), D("1")),)), 4
    )
    resets = [r for r in records(producer) if isinstance(r, BookResetRecord)]
    assert [(r.reason, r.update_id) for r in resets] == [("initial", 100), ("requested", 102)]
    assert resets[1].epoch == resets[0].epoch + 1


def test_tickers_are_checked_at_their_update_id_whenever_they_arrive() -> None:
    books, _, _ = make_books()
    books.on_diff(diff(101, 101), 1)
    books.on_snapshot(SNAPSHOT, 2)
    ahead = BookTicker(
        symbol="BTCUSDT",
        update_id=102,
        bid_price=D("10"),
        bid_quantity=D("7"),
        ask_price=D("11"),
        ask_quantity=D("3"),
    )
    books.on_ticker(ahead)  # the ticker comes before the diff that reaches its id
    books.on_diff(diff(102, 102, qty="7"), 3)
    books.on_ticker(
        BookTicker(**{**_fields(ahead), "update_id": 102, "bid_quantity": D("8")})
    )  # same id: wrong
    books.on_ticker(BookTicker(**{**_fields(ahead), "update_id": 50}))  # the book never stood there
    stats = books.stats
    assert (stats.book_ticker_checks, stats.book_ticker_mismatches) == (2, 1)
    assert books.book("BTCUSDT") is None, "a book that disagrees with the exchange is resynced"
    assert stats.book_resyncs == 1


def _fields(ticker: BookTicker) -> dict[str, Any]:
    return {name: getattr(ticker, name) for name in ticker.__struct_fields__}
