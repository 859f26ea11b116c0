"""Per-test fixtures on the session servers: settings with this test's own prefixes, a Redis
client that cleans up after the test, a topic factory, and ``eventually``."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from cryptopipe.infra.kafka import KafkaEndpoint
from cryptopipe.infra.redis_server import RedisEndpoint
from cryptopipe.infra.testing.helpers import eventually
from cryptopipe.infra.testing.kafka import create_topic
from cryptopipe.schemas import KafkaSettings, RedisSettings, TopicSpec

if TYPE_CHECKING:
    import redis


def _unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


@pytest.fixture
def kafka_settings(kafka: KafkaEndpoint) -> KafkaSettings:
    """Settings pointing at the session broker, with a topic prefix unique to this test."""
    return kafka.settings.model_copy(update={"topic_prefix": _unique("t-") + "-"})


@pytest.fixture
def redis_settings(redis_server: RedisEndpoint) -> RedisSettings:
    """Settings pointing at the session Redis, with a key prefix unique to this test."""
    return redis_server.settings.model_copy(update={"key_prefix": _unique("t-") + ":"})


@pytest.fixture
def redis_client(redis_settings: RedisSettings) -> Iterator[redis.Redis]:
    """A ``redis.Redis`` (bytes replies) on the session Redis; this test's keys are deleted after."""
    import redis as redis_lib

    client = redis_lib.Redis.from_url(redis_settings.url.get_secret_value(), decode_responses=False)
    try:
        yield client
        keys = list(client.scan_iter(match=redis_settings.key_prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def topic_factory(kafka: KafkaEndpoint, kafka_settings: KafkaSettings) -> Callable[..., str]:
    """``topic_factory(spec_or_name=None, partitions=None) -> str``: create a topic for this test.

    A ``TopicSpec`` becomes ``spec.with_prefix(kafka_settings.topic_prefix)`` (so code reading
    ``kafka_settings`` finds it) with the spec's partition count; a string gets the same prefix;
    None makes a uuid name. ``partitions`` overrides the count (default 3).
    """

    def create(spec_or_name: TopicSpec | str | None = None, partitions: int | None = None) -> str:
        if isinstance(spec_or_name, TopicSpec):
            spec = spec_or_name.with_prefix(kafka_settings.topic_prefix)
            name, count = spec.name, partitions or spec.partitions
        else:
            name = kafka_settings.topic_prefix + (spec_or_name or _unique("topic-"))
            count = partitions or 3
        return create_topic(kafka, name, count, settings=kafka_settings)

    return create


@pytest.fixture(name="eventually")
def eventually_fixture() -> Callable[..., Any]:
    """The :func:`eventually` function, for tests that prefer a fixture to an import."""
    return eventually
