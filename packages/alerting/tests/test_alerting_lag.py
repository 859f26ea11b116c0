"""LagProbe: the alerting query's Kafka lag, against a real broker's high watermarks."""

from __future__ import annotations

from typing import Any

import pytest

from cryptopipe.alerting.lag import LagProbe
from cryptopipe.infra import free_port
from cryptopipe.infra.testing import eventually, produce
from cryptopipe.observability import metrics as m
from cryptopipe.runtime import end_offsets
from cryptopipe.schemas import KafkaSettings

from .conftest import exported


def test_lag_is_the_high_watermark_minus_what_the_query_read(
    kafka_settings: KafkaSettings, topic_factory: Any
) -> None:
    topic = topic_factory("prices", partitions=2)
    produce(kafka_settings, topic, [(None, b"x")] * 10, partitioner="random")
    read = {(topic, 0): 0, (topic, 1): 0, ("another-topic", 0): 0}
    probe = LagProbe(kafka_settings, topic, lambda: read)
    try:
        first = probe.measure()  # nothing read yet: the lag is every record
        assert sum(first.values()) == 10
        assert first == end_offsets(kafka_settings, topic)
        assert end_offsets(kafka_settings, topic + "-missing") == {}
        assert set(first) == {0, 1}
        busy = max(first, key=first.__getitem__)
        other = 1 - busy
        read[(topic, busy)] = first[busy] - 1  # one record of that partition still to read
        read[(topic, other)] = first[other]
        assert probe.measure() == {busy: 1, other: 0}
        assert exported(m.ALERTING_LAG, topic=topic, partition=str(busy)) == 1
        assert exported(m.ALERTING_LAG, topic=topic, partition=str(other)) == 0
        assert exported(m.ALERTING_LAG, topic="another-topic", partition="0") is None
        # Read past the end (the query's offset is ahead of a stale ListOffsets): 0, never below.
        read[(topic, busy)] = first[busy] + 5
        assert probe.measure()[busy] == 0
    finally:
        probe.stop()


def test_a_partition_not_read_yet_has_no_series(kafka_settings: KafkaSettings, topic_factory: Any) -> None:
    topic = topic_factory("prices", partitions=1)
    probe = LagProbe(kafka_settings, topic, dict)
    try:
        assert probe.measure() == {}
        assert exported(m.ALERTING_LAG, topic=topic, partition="0") is None
    finally:
        probe.stop()


def test_the_thread_follows_the_query_and_an_unreachable_broker_is_counted(
    kafka_settings: KafkaSettings, topic_factory: Any
) -> None:
    topic = topic_factory("prices", partitions=1)
    produce(kafka_settings, topic, [(None, b"x")] * 4)
    read = {(topic, 0): 1}
    probe = LagProbe(kafka_settings, topic, lambda: read, interval_s=0.1)
    probe.start()
    try:
        eventually(
            lambda: exported(m.ALERTING_LAG, topic=topic, partition="0") == 3, timeout=10, message="lag 3"
        )
        read = {(topic, 0): 4}
        eventually(
            lambda: exported(m.ALERTING_LAG, topic=topic, partition="0") == 0, timeout=10, message="lag 0"
        )
    finally:
        probe.stop()

    dead = kafka_settings.model_copy(update={"bootstrap_servers": f"127.0.0.1:{free_port()}"})
    errors = m.ERRORS.labels(component="alerting", reason="lag_probe")
    before = errors._value.get()
    probe = LagProbe(dead, topic, lambda: {(topic, 0): 1}, interval_s=0.1)
    probe.start()
    try:
        eventually(
            lambda: errors._value.get() > before, timeout=30, message="the failed probe was not counted"
        )
    finally:
        probe.stop()


def test_a_probe_needs_a_positive_interval(kafka_settings: KafkaSettings) -> None:
    with pytest.raises(ValueError, match="interval_s"):
        LagProbe(kafka_settings, "t", dict, interval_s=0)
