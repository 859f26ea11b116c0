"""``secure_kafka``: one secured Apache Kafka for the session (SASL_SSL, SCRAM-SHA-512, mTLS, ACLs,
one principal per service), as ``cryptopipe kafka-cluster --secure`` runs it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cryptopipe.infra.errors import START_ERRORS
from cryptopipe.infra.secure_kafka import SecureKafkaCluster

#: SCRAM sessions last 15 s (KIP-368), so a password rotated mid-run is refused within a test's
#: wait (5 s made a loaded machine's clients re-authenticate more than it could keep up with).
REAUTH_MS = 15_000


@pytest.fixture(scope="session")
def secure_kafka() -> Iterator[SecureKafkaCluster]:
    """One secured node for the session (about 10 s to start on 2 cores): ``settings(service)``
    gives a service's :class:`~cryptopipe.schemas.KafkaSettings`, ``mtls_settings(service)`` the
    same principal by client certificate, ``describe()`` what KAFKA_PRINCIPALS_FILE reads,
    ``admin_config()`` the super user's librdkafka settings. Tests share it: each uses topics,
    groups or users of its own (``add_topic_prefix``, ``add_principal``, uuid-named groups).
    Fails, never skips, without Java."""
    try:
        cluster = SecureKafkaCluster(1, heap="256m", reauth_ms=REAUTH_MS).start(ready_timeout=300)
    except START_ERRORS as exc:
        pytest.fail(f"no secured Apache Kafka: {exc}", pytrace=False)
    try:
        yield cluster
    finally:
        cluster.stop()
