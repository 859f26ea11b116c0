"""The servers' side of a scenario: endpoints for servers started here, and what the Kafka topic holds."""

from __future__ import annotations

import time
import uuid
from collections import Counter

from confluent_kafka import Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType  # type: ignore[attr-defined]

from cryptopipe.infra import (
    KafkaCluster,
    KafkaEndpoint,
    KafkaQuirks,
    LocalServer,
    RedisEndpoint,
    RedisServer,
)
from cryptopipe.measure.faults.config import ScenarioError
from cryptopipe.schemas import (
    DecodeError,
    KafkaSettings,
    RedisSettings,
    decode_trade,
)

# --- endpoints for servers started here ----------------------------------------------------------


def kafka_endpoint(bootstrap_servers: str, kind: str, server: LocalServer | None = None) -> KafkaEndpoint:
    settings = KafkaSettings().model_copy(update={"bootstrap_servers": bootstrap_servers})
    return KafkaEndpoint(bootstrap_servers, kind, KafkaQuirks(), settings, server)


def cluster_endpoint(cluster: KafkaCluster) -> KafkaEndpoint:
    return kafka_endpoint(cluster.bootstrap_servers, cluster.kind)


def redis_endpoint(server: RedisServer) -> RedisEndpoint:
    settings = RedisSettings().model_copy(update={"url": server.url})
    return RedisEndpoint(server.url, server.kind, settings, server)


# --- the Kafka side ------------------------------------------------------------------------------


def topic_trade_ids(settings: KafkaSettings, topic: str, timeout: float = 120.0) -> Counter[tuple[str, int]]:
    """(symbol, trade id) -> copies, over every record of ``topic`` (read from the start by a
    consumer of its own, up to the high watermarks taken when it starts)."""
    consumer = Consumer(
        {
            **settings.client_config(),
            "group.id": f"faults-verify-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    counts: Counter[tuple[str, int]] = Counter()
    try:
        metadata = consumer.list_topics(topic, timeout=30).topics[topic]
        ends: dict[int, int] = {}
        assignment = []
        for partition in metadata.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=30)
            if high > low:
                ends[partition] = high
                assignment.append(TopicPartition(topic, partition, low))
        consumer.assign(assignment)
        pending = set(ends)
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() > deadline:
                raise ScenarioError(f"reading {topic} back took longer than {timeout:.0f} s")
            for message in consumer.consume(1000, 1.0):
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise ScenarioError(f"reading {topic} back: {error}")
                    continue
                partition, offset = message.partition(), message.offset()
                if partition is None or offset is None or partition not in ends or offset >= ends[partition]:
                    continue
                try:
                    trade = decode_trade(message.value() or b"")
                except DecodeError:
                    counts[("?", offset)] += 1
                else:
                    counts[(trade.symbol.upper(), trade.trade_id)] += 1
                if offset >= ends[partition] - 1:
                    pending.discard(partition)
    finally:
        consumer.close()
    return counts


def replication_problems(settings: KafkaSettings, topic: str, replicas: int, min_isr: int) -> list[str]:
    """Whether ``topic`` really has ``replicas`` replicas per partition and ``min.insync.replicas``."""
    config: dict[str, str | int | float | bool] = {**settings.client_config()}
    admin = AdminClient(config)
    problems = []
    metadata = admin.list_topics(topic, timeout=30).topics[topic]
    for partition, info in sorted(metadata.partitions.items()):
        if len(info.replicas) != replicas:
            problems.append(f"{topic}[{partition}] has {len(info.replicas)} replicas, not {replicas}")
    resource = ConfigResource(ResourceType.TOPIC, topic)
    configs = admin.describe_configs([resource])[resource].result(timeout=30)
    entry = configs.get("min.insync.replicas")
    if entry is None or str(entry.value) != str(min_isr):
        problems.append(
            f"{topic} has min.insync.replicas={None if entry is None else entry.value}, not {min_isr}"
        )
    return problems


def busiest_partition_leader(settings: KafkaSettings, topic: str) -> tuple[int, int]:
    """(partition, leader node id) of the partition of ``topic`` holding the most records."""
    consumer = Consumer({**settings.client_config(), "group.id": f"faults-probe-{uuid.uuid4().hex[:8]}"})
    try:
        metadata = consumer.list_topics(topic, timeout=30).topics[topic]
        sizes = {}
        for partition in metadata.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=30)
            sizes[partition] = high - low
        partition = max(sizes, key=lambda p: (sizes[p], -p))
        return partition, int(metadata.partitions[partition].leader)
    finally:
        consumer.close()


def committed_records(settings: KafkaSettings, group: str, topic: str, timeout: float = 30.0) -> int:
    """Records of ``topic`` below ``group``'s committed offsets, over its partitions (a partition
    with no commit counts 0): what a member of the group handled before it was killed, for the
    member that takes up from there. Read without joining the group."""
    consumer = Consumer({**settings.client_config(), "group.id": group, "enable.auto.commit": False})
    try:
        metadata = consumer.list_topics(topic, timeout=timeout).topics[topic]
        partitions = [TopicPartition(topic, p) for p in sorted(metadata.partitions)]
        committed = consumer.committed(partitions, timeout=timeout)
    finally:
        consumer.close()
    total = 0
    for tp in committed:
        if tp.error is not None:
            raise ScenarioError(f"{group}'s committed offset of {topic}[{tp.partition}]: {tp.error}")
        total += max(0, tp.offset)  # OFFSET_INVALID (-1001): nothing committed
    return total
