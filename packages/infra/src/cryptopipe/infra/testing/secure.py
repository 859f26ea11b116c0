"""``secure_kafka``: a secured Apache Kafka of the module's own (SASL_SSL, SCRAM-SHA-512, ACLs, one
principal per service), as ``cryptopipe kafka-cluster --secure`` runs it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cryptopipe.infra.errors import START_ERRORS
from cryptopipe.infra.secure_kafka import SecureKafkaCluster


@pytest.fixture(scope="module")
def secure_kafka() -> Iterator[SecureKafkaCluster]:
    """One secured node (about 10 s to start on 2 cores): ``settings(service)`` gives a service's
    :class:`~cryptopipe.schemas.KafkaSettings`, ``describe()`` what KAFKA_PRINCIPALS_FILE reads,
    ``admin_config()`` the super user's librdkafka settings. Fails, never skips, without Java."""
    try:
        cluster = SecureKafkaCluster(1, heap="256m").start(ready_timeout=300)
    except START_ERRORS as exc:
        pytest.fail(f"no secured Apache Kafka: {exc}", pytrace=False)
    try:
        yield cluster
    finally:
        cluster.stop()
