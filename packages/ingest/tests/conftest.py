"""Helpers for ingest's tests: run an Ingest in a thread, read back the topic."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from cryptopipe.ingest import IngestSettings
from cryptopipe.ingest.testing import RunningIngest
from cryptopipe.schemas import (
    DeadLetter,
    KafkaSettings,
    TopicSpec,
    Trade,
    decode_dead_letter,
    decode_trade,
    settings_of,
)


@pytest.fixture
def run_ingest() -> Iterator[Callable[..., RunningIngest]]:
    """``run_ingest(kafka_settings, exchange=None, **ingest_settings) -> RunningIngest``; stopped at
    teardown. An ``exchange`` (a replay exchange handle) gives the ws_url and rest_url not given."""
    running: list[RunningIngest] = []

    def start(kafka: KafkaSettings, exchange: Any = None, **overrides: Any) -> RunningIngest:
        if exchange is not None:
            overrides = {"ws_url": exchange.ws_url, "rest_url": exchange.rest_url, **overrides}
        fast = {"backoff_initial_s": 0.05, "backoff_max_s": 0.5, "flush_timeout_s": 5.0, "rest_retries": 2}
        settings = settings_of(IngestSettings, **{**fast, **overrides})
        handle = RunningIngest(settings, kafka).start()
        running.append(handle)
        return handle

    yield start
    for handle in running:
        if handle.running:
            handle.stop()


class TopicReader:
    """Reads a topic from the beginning, accumulating every record seen so far."""

    def __init__(self, kafka: KafkaSettings, topic: str) -> None:
        self.topic = topic
        self.consumer = Consumer(
            {
                **kafka.client_config(),
                "group.id": f"test-{uuid.uuid4().hex[:8]}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 20,
            }
        )
        self.records: list[tuple[bytes | None, bytes, int]] = []
        #: Each record's offset in its partition (same order as ``records``).
        self.offsets: list[int] = []
        self._assigned = False

    def _assign(self) -> bool:
        metadata = self.consumer.list_topics(topic=self.topic, timeout=5).topics.get(self.topic)
        if metadata is None or metadata.error is not None or not metadata.partitions:
            return False
        partitions = [TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in metadata.partitions]
        self.consumer.assign(partitions)
        self._assigned = True
        return True

    def poll(self) -> int:
        """Fetch what is there now; returns the number of records read so far."""
        if not self._assigned and not self._assign():
            return 0
        for message in self.consumer.consume(10_000, timeout=0.2):
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    continue
                raise AssertionError(f"consumer error: {error}")
            value = message.value()
            assert value is not None
            self.records.append((message.key(), value, message.partition() or 0))
            self.offsets.append(message.offset() or 0)
        return len(self.records)

    def trades(self) -> list[Trade]:
        return [decode_trade(value) for _key, value, _p in self.records]

    def dead_letters(self) -> list[DeadLetter]:
        return [decode_dead_letter(value) for _key, value, _p in self.records]

    def close(self) -> None:
        self.consumer.close()


@pytest.fixture
def topic_reader(kafka_settings: KafkaSettings) -> Iterator[Callable[..., TopicReader]]:
    """``topic_reader(topic, kafka=None) -> TopicReader``; a ``TopicSpec`` gets the kafka settings'
    topic prefix (``kafka`` defaults to ``kafka_settings``). Closed at teardown."""
    readers: list[TopicReader] = []

    def make(topic: str | TopicSpec, kafka: KafkaSettings | None = None) -> TopicReader:
        kafka = kafka or kafka_settings
        name = topic.with_prefix(kafka.topic_prefix).name if isinstance(topic, TopicSpec) else topic
        reader = TopicReader(kafka, name)
        readers.append(reader)
        return reader

    yield make
    for reader in readers:
        reader.close()


__all__ = ["RunningIngest", "TopicReader"]
