"""Creating the pipeline's topics when they are missing, and reading where their partitions end."""

from __future__ import annotations

import concurrent.futures
import logging
import time
from collections.abc import Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from cryptopipe.runtime.logs import rate_limited_logger
from cryptopipe.schemas import KafkaSettings, TopicSpec

logger = logging.getLogger(__name__)
#: librdkafka's own lines (one per failed connection attempt while a broker is down), rate limited.
_LIBRDKAFKA = rate_limited_logger("cryptopipe.runtime.librdkafka")

#: Errors that mean "this broker does not take that config", not "the topic cannot exist".
_CONFIG_REJECTED = {
    KafkaError.INVALID_CONFIG,
    KafkaError.POLICY_VIOLATION,
    KafkaError.UNSUPPORTED_VERSION,
    KafkaError.INVALID_REQUEST,
}

#: Errors that mean the principal may not create the topic (its ACLs), not that the broker is away.
_NOT_ALLOWED = {KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.CLUSTER_AUTHORIZATION_FAILED}

#: Errors that mean the broker is not there: the caller retries.
_UNREACHABLE = {KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN}


def ensure_topics(
    kafka: KafkaSettings, specs: Sequence[TopicSpec], *, replication_factor: int = -1, timeout_s: float = 10.0
) -> list[str]:
    """Create each topic that does not exist yet; returns the names that were created.

    An existing topic is left as it is. If the broker refuses the ``retention.ms`` config (or an
    explicit replication factor), the topic is created without it and a warning is logged.
    A broker that refuses to create a topic gets a warning, and the topic is left to its
    auto-creation. Raises :class:`KafkaException` when the broker cannot be
    reached within ``timeout_s``.
    """
    config: dict[str, Any] = {**kafka.client_config(), "logger": _LIBRDKAFKA}
    admin = AdminClient(config)
    existing = set(admin.list_topics(timeout=timeout_s).topics)
    created: list[str] = []
    for spec in specs:
        if spec.name in existing:
            continue
        if _create(admin, spec, replication_factor, with_config=True, timeout_s=timeout_s):
            created.append(spec.name)
    if created:
        _await_leaders(admin, created, timeout_s)
        logger.info("created topics %s", ", ".join(created))
    return created


def _await_leaders(admin: AdminClient, names: Sequence[str], timeout_s: float) -> None:
    """Wait until the brokers' metadata shows every new topic with a leader for each partition.

    CreateTopics answers once the controller has the topic; a broker's metadata cache follows a
    moment later (Apache Kafka, KRaft), and a client that asks in between sees no such topic.
    """
    deadline = time.monotonic() + timeout_s
    pending = set(names)
    while pending and time.monotonic() < deadline:
        topics = admin.list_topics(timeout=max(0.1, deadline - time.monotonic())).topics
        pending = {
            name
            for name in pending
            if name not in topics
            or topics[name].error is not None
            or not topics[name].partitions
            or any(p.leader < 0 for p in topics[name].partitions.values())
        }
        if pending:
            time.sleep(0.05)
    if pending:
        logger.warning(
            "topics %s created but not yet visible after %.0f s", ", ".join(sorted(pending)), timeout_s
        )


def _create(
    admin: AdminClient, spec: TopicSpec, replication_factor: int, *, with_config: bool, timeout_s: float
) -> bool:
    config = spec.config() if with_config else {}
    topic = NewTopic(
        spec.name, num_partitions=spec.partitions, replication_factor=replication_factor, config=config
    )
    future = admin.create_topics([topic], operation_timeout=timeout_s, request_timeout=timeout_s)[spec.name]
    try:
        future.result(timeout=timeout_s)
    except concurrent.futures.TimeoutError:
        logger.warning("creating topic %s timed out; relying on the broker to auto-create it", spec.name)
        return False
    except KafkaException as exc:
        error: KafkaError = exc.args[0]
        if error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
            return False
        if with_config and error.code() in _CONFIG_REJECTED:
            logger.warning(
                "broker refused topic %s with %s (%s); creating it without that config",
                spec.name,
                spec.config(),
                error.str(),
            )
            return _create(admin, spec, replication_factor, with_config=False, timeout_s=timeout_s)
        if error.code() in _UNREACHABLE:
            raise
        if error.code() in _NOT_ALLOWED:
            logger.warning(
                "not allowed to create topic %s (%s): this principal has no CREATE right, so an admin "
                "must create it (cryptopipe kafka-cluster --secure creates the pipeline's topics)",
                spec.name,
                error.str(),
            )
            return False
        logger.warning(
            "could not create topic %s (%s); relying on the broker to auto-create it", spec.name, error.str()
        )
        return False
    return True


def end_offsets(kafka: KafkaSettings, topic: str, timeout_s: float = 10.0) -> dict[int, int]:
    """Each partition of ``topic`` -> its high watermark, as the broker's ListOffsets answers it
    (short of the log on Tansu: ``KafkaQuirks.list_offsets_unreliable``); ``{}`` for a topic that
    does not exist. Raises :class:`KafkaException` when the broker does not answer."""
    config = {**kafka.client_config(), "group.id": "cryptopipe-end-offsets", "logger": _LIBRDKAFKA}
    consumer = Consumer(config)  # never joins
    try:
        metadata = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
        partitions = sorted(metadata.partitions) if metadata is not None else []
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)[1]
            for p in partitions
        }
    finally:
        consumer.close()
