"""Kafka client helpers for tests: produce records, read a partition, create a topic and wait for it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cryptopipe.infra.kafka import KafkaEndpoint
from cryptopipe.infra.testing.helpers import eventually
from cryptopipe.schemas import KafkaSettings


def consume_partition(
    config: dict[str, Any], topic: str, count: int, partition: int = 0
) -> list[bytes | None]:
    """Read ``partition`` of ``topic`` from offset 0 until ``count`` values arrived (60 s at most);
    a tombstone's value is None."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({**config, "group.id": "unused", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, partition, 0)])
    received: list[bytes | None] = []
    try:

        def done() -> bool:
            received.extend(m.value() for m in consumer.consume(1000, timeout=0.2) if m.error() is None)
            return len(received) >= count

        eventually(done, timeout=60, message=f"only {len(received)} of {count} consumed")
    finally:
        consumer.close()
    return received


def produce(
    settings: KafkaSettings,
    topic: str,
    records: Iterable[tuple[bytes | None, bytes]],
    **config: Any,
) -> int:
    """Produce ``(key, value)`` records and wait for every acknowledgement; returns the count.

    Batched (``linger.ms`` 20, at most 100 records a batch, unless ``config`` says otherwise), so a
    broker sees multi-record batches as it does from ingest; a full local queue waits, not fails.
    """
    from confluent_kafka import Producer

    producer = Producer({**settings.client_config(), "linger.ms": 20, "batch.num.messages": 100, **config})
    count = 0
    for key, value in records:
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.05)
        count += 1
    assert producer.flush(30) == 0, "producer could not deliver everything"
    return count


def create_topic(
    endpoint: KafkaEndpoint,
    name: str,
    partitions: int = 3,
    *,
    settings: KafkaSettings | None = None,
    timeout: float = 30.0,
    replication: int = 1,
) -> str:
    """Create ``name`` with ``partitions`` partitions and wait until metadata shows every leader."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic

    config: dict[str, Any] = {
        **(settings or endpoint.settings).client_config(),
        "bootstrap.servers": endpoint.bootstrap_servers,
    }
    client = AdminClient(config)
    futures = client.create_topics(
        [NewTopic(name, partitions, replication)], operation_timeout=timeout, request_timeout=timeout
    )
    futures[name].result(timeout=timeout)

    def visible() -> bool:
        try:
            metadata = client.list_topics(topic=name, timeout=5).topics.get(name)
        except KafkaException:
            return False
        return (
            metadata is not None
            and metadata.error is None
            and len(metadata.partitions) == partitions
            and all(p.leader >= 0 for p in metadata.partitions.values())
        )

    eventually(visible, timeout=timeout, message=f"topic {name} never showed {partitions} partitions")
    return name
