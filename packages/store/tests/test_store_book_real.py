"""Real Binance recordings through the order-book contract: the book rebuilt from Kafka, and the one
the books consumer's sink writes to Redis, show every recorded bookTicker whose ``u`` equals an
update's ``u``.

Each ``*_20240808.gz`` holds one REST depth snapshot near its start beside the ``depth@100ms`` diffs
and ``bookTicker`` frames. The snapshot becomes a reset (epoch 1, at its ``lastUpdateId``) and every
later diff an update, as ingest publishes them; then the records come back from Kafka.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import redis

from cryptopipe.infra.testing import consume_partition, produce
from cryptopipe.schemas import (
    BOOK_UPDATES,
    BookRecord,
    BookResetRecord,
    BookTicker,
    BookUpdateRecord,
    KafkaSettings,
    RedisSettings,
    binance,
    decode_book_record,
    decode_book_ticker,
    decode_depth_snapshot,
    decode_depth_update,
    encode_book,
    encode_key,
)
from cryptopipe.schemas.topics import PARTITIONER, java_partition
from cryptopipe.store import BookSink, BookStore

from .conftest import DATA


@dataclass
class Recording:
    records: list[BookRecord] = field(default_factory=list)
    tickers: dict[int, BookTicker] = field(default_factory=dict)


def _recording(symbol: str) -> Recording:
    """The snapshot as a reset, the diffs after it as updates, and the bookTicker frames by ``u``."""
    path = DATA / f"{symbol.lower()}_20240808.gz"
    if not path.exists():
        pytest.skip(f"real Binance recordings not found at {DATA}")
    out = Recording()
    buffered: list[BookUpdateRecord] = []
    reset: BookResetRecord | None = None
    with gzip.open(path, "rb") as lines:
        for line in lines:
            received_ns, _, raw = line.partition(b" ")
            receive_us = int(received_ns) // 1000
            if raw.startswith(b'{"lastUpdateId"'):
                snapshot = decode_depth_snapshot(raw, symbol=symbol)
                reset = BookResetRecord(
                    symbol=symbol, epoch=1, reason="initial", update_id=snapshot.last_update_id,
                    bids=snapshot.bids, asks=snapshot.asks, event_time_us=None, receive_time_us=receive_us,
                )  # fmt: skip
                continue
            frame = binance.split_frame(raw)
            if frame.stream.endswith("@bookTicker"):
                ticker = decode_book_ticker(frame.data)
                out.tickers[ticker.update_id] = ticker
            elif frame.stream.endswith("@depth@100ms"):
                diff = decode_depth_update(frame.data)
                fields = {f: getattr(diff, f) for f in diff.__struct_fields__}
                buffered.append(BookUpdateRecord(**fields, epoch=1, receive_time_us=receive_us))
    assert reset is not None
    updates = [u for u in buffered if u.final_update_id > reset.update_id]
    assert updates[0].first_update_id <= reset.update_id + 1 <= updates[0].final_update_id
    out.records = [reset, *updates]
    return out


@pytest.mark.parametrize(("symbol", "matches"), [("BTCUSDT", 564), ("ETHUSDT", 577)])
def test_books_rebuilt_from_kafka_show_every_recorded_book_ticker(
    symbol: str,
    matches: int,
    kafka_settings: KafkaSettings,
    topic_factory: Callable[..., str],
    redis_client: redis.Redis,
    redis_settings: RedisSettings,
) -> None:
    recording = _recording(symbol)
    topic = topic_factory(BOOK_UPDATES)
    produce(
        kafka_settings,
        topic,
        ((encode_key(symbol), encode_book(r)) for r in recording.records),
        partitioner=PARTITIONER,
    )
    partition = java_partition(encode_key(symbol), BOOK_UPDATES.partitions)
    values = consume_partition(kafka_settings.client_config(), topic, len(recording.records), partition)
    sink = BookSink(redis_client, key_prefix=redis_settings.key_prefix, levels=5)
    store = BookStore(redis_client, redis_settings.key_prefix)
    batch: list[BookRecord] = []
    checked = 0
    for value in values:
        record = decode_book_record(value or b"")
        batch.append(record)
        ticker = recording.tickers.get(getattr(record, "final_update_id", -1))
        if ticker is None:
            continue
        sink.write(batch)
        batch = []
        follower = sink.book(symbol)
        assert follower is not None
        assert follower.book is not None
        touch = ((ticker.bid_price, ticker.bid_quantity), (ticker.ask_price, ticker.ask_quantity))
        assert (follower.book.best_bid(), follower.book.best_ask()) == touch
        view = store.book(symbol)
        assert view is not None
        assert view.update_id == ticker.update_id
        assert (view.best_bid, view.best_ask) == touch
        checked += 1
    sink.write(batch)
    assert checked == matches  # hundreds of times a day per symbol, as the issue says
    counts = sink.counts()
    assert (counts.applied, counts.stale, counts.waiting_for_reset, counts.breaks) == (len(values), 0, 0, 0)
