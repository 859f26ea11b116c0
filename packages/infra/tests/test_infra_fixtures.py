"""The pytest fixtures other packages rely on: real servers, unique names, clean-up."""

from __future__ import annotations

import pytest
import redis
from confluent_kafka import Consumer, Producer

from cryptopipe.infra.kafka import KafkaEndpoint
from cryptopipe.infra.redis_server import RedisEndpoint
from cryptopipe.infra.testing import eventually
from cryptopipe.schemas import PRICES, KafkaSettings, RedisSettings


def test_kafka_fixture_round_trips_through_topic_factory(
    kafka: KafkaEndpoint, kafka_settings: KafkaSettings, topic_factory
) -> None:
    topic = topic_factory(PRICES)
    assert topic == PRICES.with_prefix(kafka_settings.topic_prefix).name
    producer = Producer(kafka_settings.client_config())
    producer.produce(topic, b"hello", key=b"BTCUSDT")
    assert producer.flush(10) == 0
    consumer = Consumer(
        {
            **kafka_settings.client_config(),
            "group.id": kafka_settings.topic_prefix + "g",
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
        }
    )
    consumer.subscribe([topic])
    try:

        def received():
            message = consumer.poll(0.2)
            return message if message is not None and message.error() is None else None

        message = eventually(received, timeout=30, message="no message consumed")
        assert message.value() == b"hello"
    finally:
        consumer.close()


def test_settings_prefixes_are_unique_per_test(
    kafka_settings: KafkaSettings, redis_settings: RedisSettings
) -> None:
    assert kafka_settings.topic_prefix.startswith("t-")
    assert redis_settings.key_prefix.startswith("t-")


def test_redis_client(
    redis_server: RedisEndpoint, redis_client: redis.Redis, redis_settings: RedisSettings
) -> None:
    key = redis_settings.key_prefix + "k"
    redis_client.set(key, b"v")
    assert redis_client.get(key) == b"v"


def test_topic_factory_names_and_partitions(
    kafka: KafkaEndpoint, kafka_settings: KafkaSettings, topic_factory
) -> None:
    from confluent_kafka.admin import AdminClient

    named = topic_factory("orders", partitions=2)
    anonymous = topic_factory()
    assert named == kafka_settings.topic_prefix + "orders"
    assert anonymous.startswith(kafka_settings.topic_prefix + "topic-")
    metadata = AdminClient(kafka_settings.client_config()).list_topics(timeout=10).topics
    assert len(metadata[named].partitions) == 2


def test_eventually_returns_the_first_truthy_value() -> None:
    calls = iter([0, None, "", "done", "later"])
    assert eventually(lambda: next(calls), timeout=5, interval=0) == "done"


def test_eventually_retries_assertions_and_reports_the_last_one() -> None:
    attempts: list[int] = []

    def never() -> bool:
        attempts.append(1)
        raise AssertionError("still 3 lagging")

    with pytest.raises(AssertionError, match=r"store caught up.*still 3 lagging"):
        eventually(never, timeout=0.2, interval=0.01, message="store caught up")
    assert len(attempts) > 1


def test_eventually_lets_other_errors_through() -> None:
    with pytest.raises(ZeroDivisionError):
        eventually(lambda: 1 / 0, timeout=5)


def test_eventually_is_also_a_fixture(eventually) -> None:
    assert eventually(lambda: 42, timeout=1) == 42
