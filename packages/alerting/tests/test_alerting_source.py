"""The Kafka Python Data Source without Spark: offsets a restarted query can trust, exact reads."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from pyspark.sql.streaming.datasource import ReadAllAvailable, ReadMaxRows

from cryptopipe.alerting.kafka_source import (
    KafkaRange,
    KafkaRanges,
    KafkaStreamReader,
    _cap,
    close_cached_consumers,
    read_range,
    source_options,
)
from cryptopipe.infra.testing import eventually
from cryptopipe.schemas import PRICES, KafkaSettings, encode, encode_key

from .conftest import BASE_US, trade


@pytest.fixture(autouse=True)
def _close_readers() -> Iterator[None]:
    yield
    close_cached_consumers()


def _produce_batched(kafka: KafkaSettings, topic: str, count: int, partition: int = 0) -> None:
    """``count`` trades in as few record batches as librdkafka makes (linger): Tansu's bad case."""
    producer = Producer({**kafka.client_config(), "linger.ms": 50, "batch.num.messages": 1000})
    for i in range(count):
        t = trade("BTCUSDT", i, f"{100 + i}", BASE_US + i)
        producer.produce(topic, encode(t), encode_key(t.symbol), partition=partition)
    assert producer.flush(30) == 0


def _reader(kafka: KafkaSettings, topic: str, **extra: str) -> KafkaStreamReader:
    return KafkaStreamReader(source_options(kafka.client_config(), topic, **extra))


def test_end_offsets_are_reachable_even_where_list_offsets_under_reports(
    kafka: Any, kafka_settings: KafkaSettings, topic_factory: Any
) -> None:
    topic = topic_factory(PRICES, partitions=2)
    _produce_batched(kafka_settings, topic, 100, partition=0)
    _produce_batched(kafka_settings, topic, 7, partition=1)
    probe = Consumer({**kafka_settings.client_config(), "group.id": "wm"})
    _low, high = probe.get_watermark_offsets(TopicPartition(topic, 0), timeout=10, cached=False)
    probe.close()
    if "tansu" in kafka.kind.lower():
        assert high < 100, "Tansu's ListOffsets bug is gone: the probe could be simplified"

    reader = _reader(kafka_settings, topic)
    try:
        start = reader.initialOffset()
        assert start == {"topic": topic, "partitions": {"0": 0, "1": 0}}

        def everything() -> dict[str, Any] | None:
            end = reader.latestOffset(start, ReadAllAvailable())
            return end if end["partitions"] == {"0": 100, "1": 7} else None

        end = eventually(everything, timeout=20, message="probe never saw every record")
        ranges = [KafkaRange(topic, 0, 0, 100), KafkaRange(topic, 1, 0, 7)]
        assert reader.partitions(start, end) == [KafkaRanges(tuple(ranges))]  # small: one task
        many = _reader(kafka_settings, topic, minRecordsPerTask="50")
        try:
            assert many.partitions(start, end) == [KafkaRanges((r,)) for r in ranges]
        finally:
            many.stop()
        batch = read_range(kafka_settings.client_config(), KafkaRange(topic, 0, 0, 100))
        assert batch.num_rows == 100
        assert batch.column("kafka_offset").to_pylist() == list(range(100))
        assert batch.column("trade_id").to_pylist() == list(range(100))
        assert batch.column("price").to_pylist()[:2] == ["100", "101"]
        assert set(batch.column("error").to_pylist()) == {None}
        # Nothing new: the same end again, and no partitions to read.
        assert reader.latestOffset(end, ReadAllAvailable()) == end
        assert reader.partitions(end, end) == []
        # A restarted query starting from the middle resumes exactly there.
        resumed = _reader(kafka_settings, topic)
        try:
            middle = {"topic": topic, "partitions": {"0": 60, "1": 7}}
            assert eventually(lambda: resumed.latestOffset(middle, ReadAllAvailable()) == end, timeout=20)
        finally:
            resumed.stop()
    finally:
        reader.stop()


def test_reads_are_exact_ranges_in_any_order(kafka_settings: KafkaSettings, topic_factory: Any) -> None:
    topic = topic_factory(PRICES, partitions=1)
    _produce_batched(kafka_settings, topic, 50)
    config = kafka_settings.client_config()
    for start, end in [(0, 10), (10, 35), (35, 50), (5, 6), (0, 50), (20, 30)]:
        batch = read_range(config, KafkaRange(topic, 0, start, end))
        assert batch.column("kafka_offset").to_pylist() == list(range(start, end))


def test_records_that_are_not_trades_are_flagged(kafka_settings: KafkaSettings, topic_factory: Any) -> None:
    topic = topic_factory(PRICES, partitions=1)
    producer = Producer(kafka_settings.client_config())
    producer.produce(topic, b"{not json", b"BTCUSDT")
    producer.produce(topic, encode(trade("BTCUSDT", 1, "1.5", BASE_US)), b"BTCUSDT")
    producer.produce(topic, b'{"v":9,"symbol":"X"}', b"X")
    assert producer.flush(10) == 0
    batch = read_range(kafka_settings.client_config(), KafkaRange(topic, 0, 0, 3))
    assert batch.column("error").to_pylist() == ["malformed_json", None, "unknown_version"]
    assert batch.column("symbol").to_pylist() == [None, "BTCUSDT", None]


def test_read_limits_share_the_cap_across_partitions(
    kafka_settings: KafkaSettings, topic_factory: Any
) -> None:
    assert _cap({0: 0, 1: 0}, {0: 90, 1: 10}, 50) == {0: 45, 1: 5}
    assert _cap({0: 0, 1: 5}, {0: 3, 1: 6}, 50) == {0: 3, 1: 6}
    assert _cap({0: 0, 1: 0}, {0: 100, 1: 1}, 10) == {0: 9, 1: 1}
    topic = topic_factory(PRICES, partitions=1)
    _produce_batched(kafka_settings, topic, 30)
    reader = _reader(kafka_settings, topic, maxRecordsPerTrigger="8")
    try:
        assert reader.getDefaultReadLimit() == ReadMaxRows(8)
        start = reader.initialOffset()
        assert eventually(
            lambda: reader.latestOffset(start, ReadMaxRows(8))["partitions"] == {"0": 8}, timeout=20
        )
        assert eventually(lambda: reader.latestOffset(start, ReadAllAvailable())["partitions"] == {"0": 30})
    finally:
        reader.stop()


def test_latest_starts_after_what_is_there(kafka_settings: KafkaSettings, topic_factory: Any) -> None:
    topic = topic_factory(PRICES, partitions=1)
    producer = Producer(kafka_settings.client_config())
    for i in range(5):  # one record per request: ListOffsets is right on every broker
        producer.produce(topic, encode(trade("BTCUSDT", i, "1", BASE_US)), b"BTCUSDT")
        producer.flush(10)
    reader = _reader(kafka_settings, topic, startingOffsets="latest")
    try:
        assert reader.initialOffset()["partitions"] == {"0": 5}
    finally:
        reader.stop()
    with pytest.raises(ValueError, match="startingOffsets"):
        _reader(kafka_settings, topic, startingOffsets="middle")
