"""ConsumerLoop + PriceSink end to end: real broker (Tansu here), real Redis.

Every test states which broker ran through the session summary ("cryptopipe test servers").
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from prometheus_client import REGISTRY

from cryptopipe.infra import KafkaEndpoint, LocalServer, find_redis_server, free_port
from cryptopipe.infra.testing import eventually
from cryptopipe.schemas import KafkaSettings, Trade, decode_dead_letter, encode, encode_key
from cryptopipe.store import ConsumerLoop, LatencyReservoir, PriceSink, PriceStore, WriteResult, connect_redis

from .conftest import PricesRig, produce, produce_trades, recorded_trades, redis_state, reference_latest


def lag_is(loop: ConsumerLoop[Any], total: int) -> bool:
    """Lag summed over the assigned partitions is ``total`` (partition counts differ by broker:
    the librdkafka mock auto-creates 4)."""
    lag = loop.lag()
    assert lag, "no partitions assigned yet"
    assert sum(lag.values()) == total, f"lag {lag}, expected {total} in all"
    return True


def history_ids(client: redis.Redis, prefix: str, symbol: str) -> list[int]:
    return [h["trade_id"] for h in PriceStore(client, prefix).history(symbol, limit=100_000)]


def assert_redis_matches(client: redis.Redis, prefix: str, trades: list[Trade]) -> None:
    store = PriceStore(client, prefix)
    for symbol, best in reference_latest(trades).items():
        latest = store.latest(symbol)
        assert latest is not None, symbol
        assert (latest["trade_time_us"], latest["trade_id"], latest["price"]) == (
            best.trade_time_us,
            best.trade_id,
            best.price,
        )
        ids = history_ids(client, prefix, symbol)
        assert sorted(ids) == sorted(t.trade_id for t in trades if t.symbol == symbol)


def broker_high_watermark(settings: KafkaSettings, topic: str, partition: int) -> int:
    """What ListOffsets says (wrong on Tansu: last batch's base offset + 1)."""
    consumer = Consumer({**settings.client_config(), "group.id": "watermark-probe"})
    try:
        return int(
            consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10, cached=False)[1]
        )
    finally:
        consumer.close()


def test_trades_reach_redis_and_lag_returns_to_zero(kafka: KafkaEndpoint, rig: PricesRig) -> None:
    topic = rig.topics(partitions=1)
    trades = recorded_trades(3000)
    reservoir = LatencyReservoir()
    loop = rig.loop(rig.sink(), topic, latency_sink=reservoir.add)
    rig.run(loop)

    produce_trades(rig.kafka, topic, trades)

    eventually(lambda: loop.stats.written == len(trades), message="not every trade was written")
    assert_redis_matches(rig.redis, rig.prefix, trades)
    assert loop.stats.stale == 0
    assert loop.stats.dead_lettered == 0
    assert len(reservoir.samples) == len(trades)
    # Each E2E sample is paired with its trade's system sample: they differ by its network latency
    # (the sink writes a batch grouped by symbol, so compare as multisets).
    differences = [e2e - system for system, e2e in zip(reservoir.samples, reservoir.e2e_samples, strict=True)]
    assert sorted(differences) == sorted(t.receive_time_us - t.trade_time_us for t in trades)
    # The consumer's own part (poll returned -> Redis answered) is a part of each system latency.
    in_consumer = reservoir.fetch_to_written_samples
    assert len(in_consumer) == len(trades)
    assert all(0 <= part <= system for system, part in zip(reservoir.samples, in_consumer, strict=True))
    # Caught up: lag reads 0 even though Tansu's ListOffsets lags behind the real end.
    eventually(lambda: lag_is(loop, 0), message="lag did not return to 0")
    for partition in loop.lag():
        labels = {"consumer": "prices", "topic": topic, "partition": str(partition)}
        assert REGISTRY.get_sample_value("cryptopipe_consumer_lag", labels) == 0
    if kafka.quirks.list_offsets_unreliable:
        # The bug the workaround exists for: produced in multi-record batches, ListOffsets
        # reports far less than the 3000 records there are, so a lag computed from it while
        # catching up would have been too small.
        assert broker_high_watermark(rig.kafka, topic, 0) < len(trades)


def test_bad_records_go_to_the_dead_letter_topic_and_the_loop_goes_on(rig: PricesRig) -> None:
    topic = rig.topics(partitions=1)
    dead_topic = rig.dead_letter_topic
    trades = recorded_trades(300)
    valid = [(encode_key(t.symbol), encode(t)) for t in trades]
    not_a_trade = msgspec.json.encode({"v": 1, "symbol": "BTCUSDT"})
    future_version = encode(trades[0]).replace(b'"v":1', b'"v":99')
    bad: list[tuple[bytes | None, bytes]] = [
        (b"BTCUSDT", b"\x00garbage{"),
        (b"BTCUSDT", not_a_trade),
        (b"BTCUSDT", future_version),
    ]
    records = valid[:100] + bad[:1] + valid[100:200] + bad[1:] + valid[200:]

    def dead(reason: str) -> float:
        labels = {"component": "prices-consumer", "reason": reason}
        return REGISTRY.get_sample_value("cryptopipe_dead_letters_total", labels) or 0.0

    before = {r: dead(r) for r in ("malformed_json", "invalid_trade", "unknown_version")}
    loop = rig.loop(PriceSink(rig.redis, key_prefix=rig.prefix), topic)
    rig.run(loop)
    produce(rig.kafka, topic, records)

    eventually(
        lambda: loop.stats.consumed == len(records), message="the loop did not get past the bad records"
    )
    assert loop.stats.written == len(trades)
    assert loop.stats.dead_lettered == 3
    assert_redis_matches(rig.redis, rig.prefix, trades)
    assert {r: dead(r) - before[r] for r in before} == {
        "malformed_json": 1,
        "invalid_trade": 1,
        "unknown_version": 1,
    }
    eventually(lambda: lag_is(loop, 0), message="lag did not return to 0")

    reader = Consumer({**rig.kafka.client_config(), "group.id": "dlq-reader"})
    partitions = reader.list_topics(dead_topic, timeout=10).topics[dead_topic].partitions
    reader.assign([TopicPartition(dead_topic, p, OFFSET_BEGINNING) for p in partitions])
    letters = []
    try:

        def three_letters() -> bool:
            for msg in reader.consume(10, timeout=0.5):
                if msg.error() is None:
                    letters.append((msg.headers(), decode_dead_letter(msg.value() or b"")))
            return len(letters) == 3

        eventually(three_letters, message=f"dead letters seen: {letters}")
    finally:
        reader.close()
    assert [dl.reason for _, dl in letters] == ["malformed_json", "invalid_trade", "unknown_version"]
    assert [dl.payload.encode() for _, dl in letters] == [b"\x00garbage{", not_a_trade, future_version]
    assert all(dl.source == "prices-consumer" for _, dl in letters)
    headers = dict(letters[0][0] or [])
    assert headers["topic"] == topic.encode()
    offset = headers["offset"]
    assert isinstance(offset, bytes)
    assert f"@{int(offset)})" in letters[0][1].detail  # the bad record's own offset, in both places


class CrashAfterWrite:
    """A PriceSink whose process 'dies' right after the n-th Redis write, before the commit."""

    name = "prices"

    def __init__(self, inner: PriceSink, crash_on_write: int) -> None:
        self.inner = inner
        self.crash_on_write = crash_on_write
        self.writes = 0

    def decode(self, value: bytes) -> Trade:
        return self.inner.decode(value)

    def write(self, batch: list[Trade]) -> WriteResult:
        result = self.inner.write(batch)
        self.writes += 1
        if self.writes == self.crash_on_write:
            raise SimulatedCrash(f"crashed after write {self.writes}, before committing it")
        return result


class SimulatedCrash(Exception):
    pass


def test_crash_between_write_and_commit_loses_and_duplicates_nothing(rig: PricesRig) -> None:
    topic = rig.topics()
    trades = recorded_trades(2000)
    produce_trades(rig.kafka, topic, trades)
    group = "g-crash-" + secrets.token_hex(4)

    crashing = CrashAfterWrite(rig.sink(), crash_on_write=4)
    first = rig.run(rig.loop(crashing, topic, group_id=group, batch_size=100))
    first.thread.join(60)
    assert isinstance(first.error, SimulatedCrash)
    written_before_crash = sum(len(history_ids(rig.redis, rig.prefix, s)) for s in ("BTCUSDT", "ETHUSDT"))
    assert 0 < written_before_crash < len(trades)

    second = rig.loop(rig.sink(), topic, group_id=group)
    rig.run(second)
    eventually(lambda: second.stats.written == len(trades) - written_before_crash)
    eventually(lambda: lag_is(second, 0), message="lag did not return to 0")

    assert_redis_matches(rig.redis, rig.prefix, trades)  # nothing missing, no duplicate members
    # The crashed batch was replayed (not committed) and recognised as already written.
    assert second.stats.stale >= 1
    assert second.stats.consumed < len(trades)  # it resumed from the committed offsets


class OwnRedis:
    """A redis-server of this test's own that can stop and come back on the same port and password.

    It persists to an append-only file, so what was written before the outage is still there after.
    """

    def __init__(self, workdir: Path) -> None:
        self.binary, self.port, self.password = find_redis_server(), free_port(), secrets.token_urlsafe(16)
        self.workdir = workdir
        self.servers: list[LocalServer] = []

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def _ready(self, _server: LocalServer) -> bool:
        client = redis.Redis(host="127.0.0.1", port=self.port, password=self.password, socket_timeout=1)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def start(self) -> LocalServer:
        argv = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--requirepass", self.password]
        argv += ["--appendonly", "yes", "--appendfsync", "always", "--save", "", "--dir", str(self.workdir)]
        server = LocalServer(f"redis-outage-{self.port}", argv, ready=self._ready).start()
        self.servers.append(server)
        return server


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    handle = OwnRedis(tmp_path)
    yield handle
    for server in handle.servers:
        server.stop()


def test_redis_outage_loses_nothing_and_lag_counts_the_backlog(
    kafka: KafkaEndpoint, rig: PricesRig, own_redis: OwnRedis
) -> None:
    topic = rig.topics(partitions=1)
    trades = recorded_trades(1000)
    first_half, second_half = trades[:500], trades[500:]
    server = own_redis.start()
    client = connect_redis(own_redis.url, socket_timeout=1.0)
    loop = rig.loop(PriceSink(client, key_prefix="o:", history_cap=5000), topic, retry_initial_s=0.02)
    rig.run(loop)

    produce_trades(rig.kafka, topic, first_half)
    eventually(lambda: loop.stats.written == 500)
    errors_before = (
        REGISTRY.get_sample_value(
            "cryptopipe_errors_total", {"component": "prices-consumer", "reason": "redis_connectionerror"}
        )
        or 0.0
    )

    server.stop()
    produce_trades(rig.kafka, topic, second_half)  # 5 batches of 100: Tansu's ListOffsets says ~401
    eventually(lambda: loop.stats.redis_failures >= 3, message="the loop never noticed Redis was gone")
    # While Redis is down nothing is committed, and lag counts every record not in Redis.
    eventually(lambda: lag_is(loop, 500), message="lag should be exactly the 500 unwritten records")
    if kafka.quirks.list_offsets_unreliable:
        assert broker_high_watermark(rig.kafka, topic, 0) - 500 < 500  # what a naive lag would say
    assert loop.stats.written == 500

    own_redis.start()  # the same server comes back (its AOF keeps the first half; scripts are gone)
    eventually(lambda: loop.stats.written == 1000, message="the backlog was not written after Redis returned")
    eventually(lambda: lag_is(loop, 0))
    reader = connect_redis(own_redis.url)
    assert_redis_matches(reader, "o:", trades)
    errors_after = REGISTRY.get_sample_value(
        "cryptopipe_errors_total", {"component": "prices-consumer", "reason": "redis_connectionerror"}
    )
    assert errors_after is not None
    assert errors_after > errors_before


def test_replaying_the_topic_into_a_new_group_changes_nothing(rig: PricesRig) -> None:
    topic = rig.topics()
    trades = recorded_trades(1000)
    produce_trades(rig.kafka, topic, trades + trades[:300])  # duplicates already in the topic

    first = rig.run(rig.loop(rig.sink(), topic))
    eventually(lambda: first.loop.stats.consumed == 1300)
    first.stop()
    assert (first.loop.stats.written, first.loop.stats.stale) == (1000, 300)
    state = redis_state(rig.redis, rig.prefix)

    second = rig.run(rig.loop(rig.sink(), topic))
    eventually(lambda: second.loop.stats.consumed == 1300)
    assert second.loop.stats.stale == 1300
    assert redis_state(rig.redis, rig.prefix) == state
    # Copies in the topic, and a new group's read of it, are no record read twice by one loop.
    assert first.loop.stats.redelivered == second.loop.stats.redelivered == 0


def _redelivered_total() -> float:
    labels = {"consumer": "prices"}
    return REGISTRY.get_sample_value("cryptopipe_consumer_redelivered_total", labels) or 0.0


def test_records_read_again_in_one_loops_life_are_counted_as_redelivered(rig: PricesRig) -> None:
    topic = rig.topics(partitions=1)
    trades = recorded_trades(300)
    produce_trades(rig.kafka, topic, trades)
    loop = rig.loop(rig.sink(), topic)
    before = _redelivered_total()

    def consumed(count: int) -> bool:
        loop.run_once()
        assert loop.stats.consumed >= count, f"{loop.stats.consumed} of {count} consumed"
        return True

    eventually(lambda: consumed(300), message="the loop did not read the topic")
    assert loop.stats.redelivered == 0
    # The position goes back to an offset already handled, as when a commit failed and the
    # consumer resumed from the last one that succeeded.
    loop._group.consumer.seek(TopicPartition(topic, 0, 100))
    eventually(lambda: consumed(500), message="the loop did not read the records again")
    assert loop.stats.consumed == 500
    assert loop.stats.redelivered == 200
    assert _redelivered_total() - before == 200
    assert (loop.stats.written, loop.stats.stale) == (300, 200)  # written again, idempotently
    assert_redis_matches(rig.redis, rig.prefix, trades)
