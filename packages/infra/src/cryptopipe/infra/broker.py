"""What every local Kafka broker of ours shares: a loopback process and how to tell it is ready.

:class:`LoopbackBroker` is the base of :class:`~cryptopipe.infra.apache_kafka.ApacheKafkaBroker`
and :class:`~cryptopipe.infra.tansu.TansuBroker`; a broker is ready when it listens itself and
answers a real Metadata request (:func:`tcp_then_metadata`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any, ClassVar

from cryptopipe.infra.process import LocalServer, listening_on

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"


def kafka_metadata_ready(bootstrap_servers: str, timeout: float = 5.0, **config: str) -> bool:
    """Whether a real Metadata request to ``bootstrap_servers`` returns at least one broker."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    client_config: dict[str, Any] = {
        "bootstrap.servers": bootstrap_servers,
        "logger": logging.getLogger("cryptopipe.infra.librdkafka"),
        **config,
    }
    admin = AdminClient(client_config)
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        log.debug("metadata request to %s failed: %s", bootstrap_servers, exc)
        return False
    return bool(metadata.brokers)


def warm_producer_ids(bootstrap_servers: str, timeout: float = 10.0) -> bool:
    """Have a fresh broker hand out its first producer id, so the first idempotent producer of a
    run gets one at once; True once an id was assigned.

    A KRaft broker asks its controller for a block of producer ids on the first InitProducerId
    it receives, and answers that one COORDINATOR_LOAD_IN_PROGRESS. librdkafka retries, but logs
    a WARNING ("Failed to acquire idempotence PID ... Coordinator load in progress"), which
    ingest relayed on every ``cryptopipe up``. This throwaway producer takes that answer instead,
    quietly; nothing is produced.
    """
    from confluent_kafka import Producer

    state: dict[str, Any] = {}
    quiet = logging.getLogger("cryptopipe.infra.librdkafka.warmup")
    quiet.setLevel(logging.ERROR)
    producer = Producer(
        {
            "bootstrap.servers": bootstrap_servers,
            "enable.idempotence": True,
            "statistics.interval.ms": 50,
            "stats_cb": lambda text: state.update(json.loads(text).get("eos", {})),
            "logger": quiet,
        }
    )
    deadline = time.monotonic() + timeout
    while state.get("idemp_state") != "Assigned" and time.monotonic() < deadline:
        producer.poll(0.05)
    assigned = state.get("idemp_state") == "Assigned"
    if not assigned:
        log.debug("no producer id from %s within %.0f s (state %s)", bootstrap_servers, timeout, state)
    return assigned


def tcp_then_metadata(host: str, port: int) -> Callable[[LocalServer], bool]:
    """A readiness probe: ``server`` itself listens on ``port`` and answers a Metadata request."""

    def ready(server: LocalServer) -> bool:
        return (
            server.pid is not None
            and listening_on(server.pid, port)
            and kafka_metadata_ready(f"{host}:{port}", timeout=2.0)
        )

    return ready


class LoopbackBroker(LocalServer):
    """A broker process of ours on loopback; ``product`` and ``version`` make its ``kind``."""

    product: ClassVar[str]
    version: str
    advertised_port: int

    @property
    def bootstrap_servers(self) -> str:
        """The address clients should use: the advertised one (a proxy's, when one fronts the broker)."""
        return f"{LOOPBACK}:{self.advertised_port}"

    @property
    def kind(self) -> str:
        return f"{self.product} {self.version}"
