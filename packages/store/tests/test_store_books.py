"""The book in Redis: written by one Lua script that never goes backwards in (epoch, update id), so
any order of writes by any number of consumers ends at the newest book, and a replay changes nothing;
the books consumer's records all add up, through the real consumer loop."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from cryptopipe.infra.testing import eventually, produce
from cryptopipe.schemas import BOOK_UPDATES, DEAD_LETTERS, BookRecord, RedisSettings, encode_book, encode_key
from cryptopipe.store import BookSink, BookStore

from .conftest import PricesRig, redis_state
from .test_store_book_support import SyntheticBook

LEVELS = 5


def _stream() -> tuple[SyntheticBook, list[BookRecord]]:
    """Two epochs of one symbol: a reset and 8 updates each, a gap between them."""
    book = SyntheticBook("BTCUSDT", seed=11)
    records: list[BookRecord] = [book.reset(), *(book.update() for _ in range(8))]
    records += [book.reset("gap", skip=2), *(book.update() for _ in range(8))]
    return book, records


BOOK, RECORDS = _stream()


def _position(record: BookRecord) -> tuple[int, int]:
    return record.epoch, getattr(record, "final_update_id", None) or record.update_id


def _assert_holds(store: BookStore, position: tuple[int, int]) -> None:
    view = store.book("BTCUSDT")
    assert view is not None
    assert (view.epoch, view.update_id) == position
    bids, asks = BOOK.truth[position]
    assert (view.bids, view.asks) == (bids[:LEVELS], asks[:LEVELS])
    assert view.best_bid == bids[0]
    assert view.best_ask == asks[0]
    assert view.spread == asks[0][0] - bids[0][0]
    assert view.mid == (asks[0][0] + bids[0][0]) / 2


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prefixes=st.lists(st.integers(1, len(RECORDS)), min_size=1, max_size=8))
def test_writes_in_any_order_end_at_the_newest_book_and_never_go_back(
    redis_client: redis.Redis, redis_settings: RedisSettings, prefixes: list[int]
) -> None:
    """Each write is a consumer that took the first k records (a rebalance, a replay, a lagging copy)."""
    prefix = f"{redis_settings.key_prefix}{uuid.uuid4().hex[:6]}:"
    store = BookStore(redis_client, prefix)
    newest: tuple[int, int] | None = None
    for k in prefixes:
        before = redis_state(redis_client, prefix)
        BookSink(redis_client, key_prefix=prefix, levels=LEVELS).write(RECORDS[:k])
        position = _position(RECORDS[k - 1])
        if newest is not None and position <= newest:
            assert redis_state(redis_client, prefix) == before  # refused: not even written_time_us moves
        else:
            newest = position
        _assert_holds(store, newest)
    assert store.symbols() == ["BTCUSDT"]


def test_the_same_batch_is_taken_once_while_redis_fails(
    redis_client: redis.Redis, redis_settings: RedisSettings
) -> None:
    """The loop retries the very same batch after a Redis error: it is applied to the books once."""
    prefix = redis_settings.key_prefix
    down = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    sink = BookSink(down, key_prefix=prefix, levels=LEVELS)
    batch = list(RECORDS)
    with pytest.raises(redis.RedisError):
        sink.write(batch)
    sink.client = redis_client
    result = sink.write(batch)
    assert (result.written, result.stale) == (len(RECORDS), 0)
    assert sink.counts().applied == len(RECORDS)
    _assert_holds(BookStore(redis_client, prefix), _position(RECORDS[-1]))
    staleness = REGISTRY.get_sample_value("cryptopipe_book_staleness_seconds", {"symbol": "BTCUSDT"})
    assert staleness is not None
    assert staleness >= 0


def test_a_crossed_book_is_not_written_and_waits_for_a_reset(
    redis_client: redis.Redis, redis_settings: RedisSettings
) -> None:
    prefix = redis_settings.key_prefix
    book = SyntheticBook("BTCUSDT", seed=2)
    reset = book.reset()
    cross = book.update()
    best_ask = reset.asks[0][0]
    crossed = type(cross)(
        **{**{f: getattr(cross, f) for f in cross.__struct_fields__}, "bids": ((best_ask, Decimal(1)),)}
    )
    sink = BookSink(redis_client, key_prefix=prefix, levels=LEVELS)
    sink.write([reset])
    sink.write([crossed, book.update()])
    follower = sink.book("BTCUSDT")
    assert follower is not None
    assert follower.book is None
    assert follower.last_break == "crossed"
    counts = sink.counts()
    assert (counts.applied, counts.waiting_for_reset, counts.breaks) == (2, 1, 1)
    view = BookStore(redis_client, prefix).book("BTCUSDT")
    assert view is not None
    assert view.update_id == reset.update_id


def test_the_books_consumer_writes_every_record_once_and_its_books_balance(rig: PricesRig) -> None:
    topic = rig.topic_factory(BOOK_UPDATES, partitions=2)
    rig.topic_factory(DEAD_LETTERS)
    records = [(encode_key(r.symbol), encode_book(r)) for r in RECORDS]
    junk = (b"BTCUSDT", b'{"type":"update","v":1}')
    produce(rig.kafka, topic, [*records[:4], junk, *records[4:], *records[:3]])  # a replayed tail too
    sink = BookSink(rig.redis, key_prefix=rig.prefix, levels=LEVELS)
    loop = rig.loop(sink, topic)
    rig.run(loop)
    total = len(records) + 1 + 3
    eventually(lambda: loop.stats.consumed == total, message="not every record was consumed")
    counts = sink.counts()
    assert loop.stats.dead_lettered == 1
    assert (counts.applied, counts.stale, counts.waiting_for_reset) == (len(records), 3, 0)
    assert (
        loop.stats.consumed
        == counts.applied + counts.stale + counts.waiting_for_reset + loop.stats.dead_lettered
    )
    assert (loop.stats.written, loop.stats.stale) == (counts.applied, counts.stale)
    _assert_holds(BookStore(rig.redis, rig.prefix), _position(RECORDS[-1]))
    # A second consumer group replays the whole topic: Redis does not change at all.
    before = redis_state(rig.redis, rig.prefix)
    again = rig.loop(BookSink(rig.redis, key_prefix=rig.prefix, levels=LEVELS), topic)
    rig.run(again)
    eventually(lambda: again.stats.consumed == total, message="the replay was not consumed")
    assert redis_state(rig.redis, rig.prefix) == before
