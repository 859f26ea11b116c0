"""Rebuilding exact books from Kafka alone: from a checkpoint, from an earlier reset, at chosen update
ids; a continuity break is counted and the book recovers at the next reset; many symbols in one pass
as each alone; the books consumer warms the symbols it meets mid-epoch from their checkpoints."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pytest
import redis

from cryptopipe.schemas import (
    BOOK_SNAPSHOTS,
    BOOK_UPDATES,
    BookCheckpoint,
    BookRecord,
    BookUpdateRecord,
    KafkaSettings,
    RedisSettings,
)
from cryptopipe.store import (
    BookSink,
    BookStore,
    Rebuilt,
    WarmStart,
    read_checkpoints,
    rebuild_book,
    rebuild_books,
)

from .test_store_book_support import SyntheticBook, full_book, produce_book


@dataclass
class Stream:
    """ETHUSDT's records (SOLUSDT's interleaved on the same partition) on a uuid-named topic pair."""

    kafka: KafkaSettings
    updates: str
    snapshots: str
    eth: SyntheticBook
    #: (record, partition, offset) of every ETHUSDT record produced, in order.
    placed: list[tuple[BookRecord, int, int]]


def _interleave(eth: list[BookRecord], sol: SyntheticBook) -> list[BookRecord]:
    out: list[BookRecord] = []
    for record in eth:
        out += [record, sol.update()]
    return out


@pytest.fixture
def stream(kafka_settings: KafkaSettings, topic_factory: Callable[..., str]) -> Stream:
    """Epoch 1: a reset and 30 updates, a checkpoint after the 20th; epoch 2: a reset after a gap
    (3 updates the stream never showed) and 10 updates."""
    updates, snapshots = topic_factory(BOOK_UPDATES), topic_factory(BOOK_SNAPSHOTS)
    eth, sol = SyntheticBook("ETHUSDT", seed=7), SyntheticBook("SOLUSDT", seed=8)
    first = [eth.reset(), *(eth.update() for _ in range(20))]
    records = [sol.reset(), *_interleave(first, sol)]
    placed = produce_book(kafka_settings, updates, records)
    partition, last_offset = placed[-2]  # the 20th ETH update (a SOL update follows it)
    produce_book(kafka_settings, snapshots, [eth.checkpoint(partition, last_offset + 1)])
    rest = [*(eth.update() for _ in range(10)), eth.reset("gap", skip=3), *(eth.update() for _ in range(10))]
    placed += produce_book(kafka_settings, updates, _interleave(rest, sol))
    all_records = records + _interleave(rest, sol)
    eth_placed = [(r, p, o) for r, (p, o) in zip(all_records, placed, strict=True) if r.symbol == "ETHUSDT"]
    assert {p for _, p, _ in eth_placed} == {1}  # Java's partitioner: ETHUSDT and SOLUSDT share 1 of 4
    return Stream(kafka_settings, updates, snapshots, eth, eth_placed)


def _final_id(record: BookRecord) -> int:
    return getattr(record, "final_update_id", None) or record.update_id


def test_a_checkpoint_then_the_updates_rebuild_the_exact_book_at_any_id(stream: Stream) -> None:
    checkpoints = read_checkpoints(stream.kafka, stream.snapshots)
    assert set(checkpoints) == {"ETHUSDT"}
    assert checkpoints["ETHUSDT"].epoch == 1
    rebuilt = rebuild_book(
        stream.kafka, "ETHUSDT", updates_topic=stream.updates, snapshots_topic=stream.snapshots
    )
    assert rebuilt.book is not None
    assert rebuilt.checkpoint == checkpoints["ETHUSDT"]
    assert rebuilt.epoch == 2
    assert full_book(rebuilt.book) == stream.eth.truth[(2, rebuilt.book.update_id)]
    assert _final_id(stream.placed[-1][0]) == rebuilt.book.update_id
    # 10 updates of epoch 1 after the checkpoint, the reset, 10 updates of epoch 2: all applied.
    assert (rebuilt.counts.applied, rebuilt.counts.resets, rebuilt.counts.taken) == (21, 1, 21)
    # Stopping at ids inside epoch 1 after the checkpoint gives the book exactly at each.
    for record, _, _ in stream.placed[22:31:4]:
        target = _final_id(record)
        at = rebuild_book(
            stream.kafka,
            "ETHUSDT",
            updates_topic=stream.updates,
            checkpoint=checkpoints["ETHUSDT"],
            until_update_id=target,
        )
        assert at.book is not None
        assert at.book.update_id == target
        assert full_book(at.book) == stream.eth.truth[(1, target)]


def test_a_rebuild_from_an_earlier_reset_reaches_the_same_books(stream: Stream) -> None:
    reset, _, offset = stream.placed[0]
    for record, _, _ in [stream.placed[0], stream.placed[5], stream.placed[17], stream.placed[-1]]:
        target = _final_id(record)
        at = rebuild_book(
            stream.kafka, "ETHUSDT", updates_topic=stream.updates, from_offset=offset, until_update_id=target
        )
        assert at.book is not None
        assert at.book.update_id == target
        assert full_book(at.book) == stream.eth.truth[(record.epoch, target)]
        assert at.counts.waiting_for_reset == at.counts.stale == 0
    before = rebuild_book(
        stream.kafka,
        "ETHUSDT",
        updates_topic=stream.updates,
        from_offset=offset,
        until_update_id=_final_id(reset) - 1,
    )
    assert before.book is None  # nothing of the stream reaches an id before the first reset


def test_a_continuity_break_is_counted_and_recovered_at_the_next_reset(
    kafka_settings: KafkaSettings, topic_factory: Callable[..., str]
) -> None:
    updates = topic_factory(BOOK_UPDATES)
    eth = SyntheticBook("ETHUSDT", seed=3)
    records: list[BookRecord] = [eth.reset(), *(eth.update() for _ in range(5))]
    eth.update()  # lost: never produced
    records += [eth.update() for _ in range(4)]
    records += [eth.reset("gap"), *(eth.update() for _ in range(3))]
    produce_book(kafka_settings, updates, records)
    rebuilt = rebuild_book(kafka_settings, "ETHUSDT", updates_topic=updates, from_offset=0)
    counts = rebuilt.counts
    assert (counts.breaks, counts.waiting_for_reset, counts.resets) == (1, 4, 2)
    assert (counts.applied, counts.stale, counts.taken) == (10, 0, len(records))
    assert rebuilt.book is not None
    assert rebuilt.epoch == 2
    assert full_book(rebuilt.book) == eth.truth[(2, rebuilt.book.update_id)]


@dataclass
class Market:
    """Six symbols on four partitions (XRP and ADA share 0, ETH and SOL share 1), interleaved round
    by round: a reset and 12 updates each, then SOL loses an update, takes 3 more, resyncs and takes
    4; the others take 8. ETH and XRP have a checkpoint after their 7th record."""

    kafka: KafkaSettings
    updates: str
    snapshots: str
    books: dict[str, SyntheticBook]
    streams: dict[str, list[BookRecord]]
    records: list[BookRecord]
    checkpoints: dict[str, BookCheckpoint]


@pytest.fixture
def market(kafka_settings: KafkaSettings, topic_factory: Callable[..., str]) -> Market:
    updates, snapshots = topic_factory(BOOK_UPDATES), topic_factory(BOOK_SNAPSHOTS)
    symbols = ("XRPUSDT", "ADAUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "BTCUSDT")
    books = {s: SyntheticBook(s, seed=i) for i, s in enumerate(symbols)}
    streams: dict[str, list[BookRecord]] = {
        s: [b.reset(), *(b.update() for _ in range(12))] for s, b in books.items()
    }
    sol = books["SOLUSDT"]
    sol.update()  # lost: never produced
    streams["SOLUSDT"] += [
        *(sol.update() for _ in range(3)),
        sol.reset("gap"),
        *(sol.update() for _ in range(4)),
    ]
    for symbol in ("XRPUSDT", "ADAUSDT", "ETHUSDT", "BNBUSDT", "BTCUSDT"):
        streams[symbol] += [books[symbol].update() for _ in range(8)]
    records = [r for row in itertools.zip_longest(*streams.values()) for r in row if r is not None]
    placed = dict(zip(map(id, records), produce_book(kafka_settings, updates, records), strict=True))
    partitions = {s: placed[id(r[0])][0] for s, r in streams.items()}
    assert partitions == {"XRPUSDT": 0, "ADAUSDT": 0, "ETHUSDT": 1, "SOLUSDT": 1, "BNBUSDT": 3, "BTCUSDT": 2}

    def checkpoint(record: BookRecord) -> BookCheckpoint:
        bids, asks = books[record.symbol].truth[(record.epoch, _final_id(record))]
        partition, offset = placed[id(record)]
        return BookCheckpoint(
            symbol=record.symbol,
            epoch=record.epoch,
            update_id=_final_id(record),
            bids=bids,
            asks=asks,
            event_time_us=record.event_time_us,
            updates_partition=partition,
            updates_offset=offset + 1,
            checkpoint_time_us=record.receive_time_us,
        )

    checkpoints = {s: checkpoint(streams[s][6]) for s in ("ETHUSDT", "XRPUSDT")}
    produce_book(kafka_settings, snapshots, checkpoints.values())
    return Market(kafka_settings, updates, snapshots, books, streams, records, checkpoints)


def _outcome(rebuilt: Rebuilt) -> tuple[object, ...]:
    book = None if rebuilt.book is None else (rebuilt.book.update_id, full_book(rebuilt.book))
    return (rebuilt.partition, rebuilt.next_offset, rebuilt.epoch, book, rebuilt.counts, rebuilt.dead)


def test_one_pass_rebuilds_each_symbol_as_its_own_rebuild_does(
    market: Market, caplog: pytest.LogCaptureFixture
) -> None:
    """ETH and XRP start from their checkpoints, the rest from offset 0; each stops at its own id
    (XRP's is before its checkpoint) or at the end."""
    streams, checkpoints = market.streams, market.checkpoints
    until = {
        "XRPUSDT": _final_id(streams["XRPUSDT"][3]),
        "ADAUSDT": _final_id(streams["ADAUSDT"][9]),
        "ETHUSDT": _final_id(streams["ETHUSDT"][15]),
        "BNBUSDT": _final_id(streams["BNBUSDT"][4]) + 1,
    }
    with caplog.at_level(logging.INFO, logger="cryptopipe.store.book_rebuild"):
        together = rebuild_books(
            market.kafka,
            market.books,
            updates_topic=market.updates,
            checkpoints=checkpoints,
            from_offset=0,
            until_update_ids=until,
            progress_s=0,
        )
    assert any("partitions done" in r.getMessage() for r in caplog.records)
    for symbol, truth in market.books.items():
        alone = rebuild_book(
            market.kafka,
            symbol,
            updates_topic=market.updates,
            checkpoint=checkpoints.get(symbol),
            from_offset=0,
            until_update_id=until.get(symbol),
        )
        assert _outcome(together[symbol]) == _outcome(alone), symbol
        book = together[symbol].book
        assert book is not None
        assert full_book(book) == truth.truth[(together[symbol].epoch or 0, book.update_id)]
    xrp, ada = together["XRPUSDT"].book, together["ADAUSDT"].book
    assert xrp is not None
    assert xrp.update_id > until["XRPUSDT"]  # started past it: returned as it is
    assert ada is not None
    assert ada.update_id == until["ADAUSDT"]
    assert (together["SOLUSDT"].epoch, together["SOLUSDT"].counts.breaks) == (2, 1)


def test_a_restarted_books_consumer_warms_every_symbol_it_meets_in_one_rebuild(
    market: Market, redis_client: redis.Redis, redis_settings: RedisSettings
) -> None:
    """Resuming after the checkpoints, every symbol is met mid-epoch in the first batch: one warm
    start serves them all; ETH and XRP have their books, SOL waits for its resync, the rest for a
    reset."""
    warm = WarmStart(market.kafka, updates_topic=market.updates, snapshots_topic=market.snapshots)
    asked: list[list[str]] = []

    def counted(updates: Sequence[BookUpdateRecord]) -> dict[str, Rebuilt]:
        asked.append([u.symbol for u in updates])
        return warm(updates)

    sink = BookSink(redis_client, key_prefix=redis_settings.key_prefix, levels=5, warm_start=counted)
    sink.write(market.records[7 * len(market.books) :])  # from each symbol's 8th record on
    assert asked == [list(market.books)]
    for symbol in ("ETHUSDT", "XRPUSDT", "SOLUSDT"):
        follower = sink.book(symbol)
        assert follower is not None
        assert follower.book is not None
        last = market.streams[symbol][-1]
        assert (follower.epoch, follower.book.update_id) == (last.epoch, _final_id(last))
        assert full_book(follower.book) == market.books[symbol].truth[(last.epoch, _final_id(last))]
    for symbol in ("ADAUSDT", "BNBUSDT", "BTCUSDT"):
        follower = sink.book(symbol)
        assert follower is not None
        assert follower.book is None


def test_the_books_consumer_warms_a_symbol_met_mid_epoch_from_its_checkpoint(
    stream: Stream, redis_client: redis.Redis, redis_settings: RedisSettings
) -> None:
    prefix = redis_settings.key_prefix
    warm = WarmStart(stream.kafka, updates_topic=stream.updates, snapshots_topic=stream.snapshots)
    sink = BookSink(redis_client, key_prefix=prefix, levels=5, warm_start=warm)
    # A consumer that restarts at the 25th ETH record (epoch 1, after the checkpoint) never saw the reset.
    _, _, offset = stream.placed[25]
    mid_epoch = [r for r, _, o in stream.placed if o >= offset]
    sink.write(list(mid_epoch))
    follower = sink.book("ETHUSDT")
    assert follower is not None
    assert follower.book is not None
    assert full_book(follower.book) == stream.eth.truth[(2, follower.book.update_id)]
    counts = sink.counts()
    assert (counts.applied, counts.waiting_for_reset, counts.stale) == (len(mid_epoch), 0, 0)
    view = BookStore(redis_client, prefix).book("ETHUSDT")
    assert view is not None
    assert (view.epoch, view.update_id) == (2, follower.book.update_id)
    bids, asks = stream.eth.truth[(2, view.update_id)]
    assert (view.bids, view.asks) == (bids[:5], asks[:5])


def test_a_consumer_that_skipped_records_rebuilds_instead_of_breaking(
    stream: Stream, redis_client: redis.Redis, redis_settings: RedisSettings
) -> None:
    """A rebalance moved the partition away and back: the updates now skip past the book it holds."""
    warm = WarmStart(stream.kafka, updates_topic=stream.updates, snapshots_topic=stream.snapshots)
    sink = BookSink(redis_client, key_prefix=redis_settings.key_prefix, levels=5, warm_start=warm)
    records = [r for r, _, _ in stream.placed]
    sink.write(records[:23])
    sink.write(records[28:])
    follower = sink.book("ETHUSDT")
    assert follower is not None
    assert follower.book is not None
    assert full_book(follower.book) == stream.eth.truth[(2, follower.book.update_id)]
    assert _final_id(records[-1]) == follower.book.update_id
    counts = sink.counts()
    assert (counts.breaks, counts.waiting_for_reset, counts.stale) == (0, 0, 0)
    assert counts.applied == 23 + len(records[28:])
