"""Apache Kafka 4.x in KRaft mode, from Maven Central jars: one local broker, or a loopback cluster.

No Docker and no tarball: :func:`kafka_libs` resolves ``org.apache.kafka:kafka_2.13`` with its
runtime dependencies and a logging backend (log4j2, as Kafka's own distribution uses) into the
user cache (see :mod:`cryptopipe.runtime.jvm`); :class:`ApacheKafkaBroker` formats a data
directory with ``kafka.tools.StorageTool`` and runs ``kafka.Kafka`` with a small heap.

Every listener binds 127.0.0.1. A broker is ready when a real Metadata request lists it. Data
lives on disk in the broker's own directory, so :meth:`LocalServer.restart` (or a SIGKILL then
``restart``) keeps it, as a real deployment would; :meth:`LocalServer.stop` removes it.

:class:`KafkaCluster` runs ``n`` combined broker+controller nodes with a static quorum, default
replication factor ``n`` (at most 3) and ``min.insync.replicas`` = replication factor - 1: the
shape of a small production cluster, for replication and leader-failover tests.
"""

from __future__ import annotations

import base64
import logging
import uuid
from collections.abc import Mapping
from pathlib import Path

from cryptopipe.infra.broker import LOOPBACK, LoopbackBroker, tcp_then_metadata, warm_producer_ids
from cryptopipe.infra.errors import InfraError, ServerStartError
from cryptopipe.infra.kafka_security import KafkaSecurity
from cryptopipe.runtime.jvm import Artifact, JavaRuntime, ensure_artifacts, find_java
from cryptopipe.runtime.lifecycle import StartStop
from cryptopipe.runtime.net import free_port

log = logging.getLogger(__name__)

KAFKA_VERSION = "4.1.1"
"""The pinned Apache Kafka release (its broker needs Java 17+)."""
SCALA_VERSION = "2.13"
LOG4J_VERSION = "2.24.3"
"""Matches the log4j-core that kafka_2.13 4.1.1 depends on."""
MIN_JAVA = 17
DEFAULT_HEAP = "512m"
GC_OPTIONS = ("-XX:+UseZGC",)
"""The broker's garbage collector: ZGC, whose pauses stay under a millisecond.

Measured with ``bench prices --rate 2000`` (ingest ``linger.ms`` 0, 40 s after a 20 s warm-up): G1
(``MaxGCPauseMillis=20``) paused the broker 8-20 times in 42 s for 16-18 ms each, and every pause
held up the ~35 trades that arrived in it: system latency p99 11.1-15.6 ms. ZGC, same runs: p99
5.9-8.0 ms at the same broker CPU per trade (208 against 208-224 µs). The heap is committed at
start (``-Xms`` = ``-Xmx``) so that the collector never resizes it under load.
"""

_LOG4J2 = """\
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = {level}
rootLogger.appenderRef.stdout.ref = STDOUT
logger.state.name = state.change.logger
logger.state.level = warn
"""


def kafka_artifacts(version: str = KAFKA_VERSION) -> list[Artifact]:
    return [
        Artifact("org.apache.kafka", f"kafka_{SCALA_VERSION}", version),
        Artifact("org.apache.logging.log4j", "log4j-slf4j2-impl", LOG4J_VERSION),
    ]


def kafka_libs(version: str = KAFKA_VERSION, *, java: JavaRuntime | None = None) -> Path:
    """The cached jar directory for Apache Kafka ``version`` (resolved on first use)."""
    java = java or find_java(MIN_JAVA)
    return ensure_artifacts("kafka", version, kafka_artifacts(version), java=java)


def new_cluster_id() -> str:
    """A Kafka cluster id: a random UUID in URL-safe base64 without padding (22 characters).

    Never one that starts with "-": ``kafka-storage format --cluster-id -xyz`` reads it as an
    option and fails (1 start in 64 did, in CI). Kafka's own ``Uuid.randomUuid`` skips those too.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


class ApacheKafkaBroker(LoopbackBroker):
    """One Apache Kafka node (``process.roles=broker,controller``) on loopback, data on disk."""

    product = "apache-kafka"

    def __init__(
        self,
        libs: Path,
        java: JavaRuntime,
        *,
        port: int,
        controller_port: int,
        cluster_id: str,
        node_id: int = 1,
        voters: Mapping[int, int] | None = None,
        advertised_port: int | None = None,
        replication: int = 1,
        heap: str = DEFAULT_HEAP,
        version: str = KAFKA_VERSION,
        ready_timeout: float = 60.0,
        overrides: Mapping[str, str] | None = None,
        security: KafkaSecurity | None = None,
    ) -> None:
        self.libs = libs
        self.java = java
        self.port = port
        self.controller_port = controller_port
        self.cluster_id = cluster_id
        self.node_id = node_id
        self.voters = dict(voters) if voters else None
        self.advertised_port = advertised_port or port
        self.replication = replication
        self.version = version
        self._overrides = dict(overrides or {})
        self.security = security
        #: The SASL_SSL listener brokers and the super user talk on (secured nodes only).
        self.internal_port = free_port(LOOPBACK) if security is not None else None
        #: The SSL listener that authenticates clients by certificate (secured nodes only).
        self.mtls_port = free_port(LOOPBACK) if security is not None else None
        classpath = f"{libs}/*"
        argv = [
            java.executable, f"-Xmx{heap}", f"-Xms{heap}", *GC_OPTIONS,
            "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true", "-Djava.net.preferIPv4Stack=true",
            "-Dlog4j2.configurationFile={workdir}/log4j2.properties",
            "-cp", classpath, "kafka.Kafka", "{workdir}/server.properties",
        ]  # fmt: skip
        super().__init__(
            f"kafka-{node_id}",
            argv,
            ready=(
                security.ready(self.internal_port)
                if security is not None and self.internal_port is not None
                else tcp_then_metadata(LOOPBACK, port)
            ),
            ready_timeout=ready_timeout,
            stop_grace=15.0,
            prepare=self._format,
        )

    def properties(self, workdir: Path) -> dict[str, str]:
        """The broker's ``server.properties`` (see Kafka's KRaft quickstart for each key)."""
        rf = str(self.replication)
        isr = str(max(1, self.replication - 1))
        props = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "listeners": f"PLAINTEXT://{LOOPBACK}:{self.port},CONTROLLER://{LOOPBACK}:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{LOOPBACK}:{self.advertised_port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(workdir / "data"),
            "num.partitions": "3",
            "default.replication.factor": rf,
            "min.insync.replicas": isr,
            "offsets.topic.replication.factor": rf,
            "offsets.topic.num.partitions": "8",
            "transaction.state.log.replication.factor": rf,
            "transaction.state.log.min.isr": isr,
            "transaction.state.log.num.partitions": "4",
            "share.coordinator.state.topic.replication.factor": rf,
            "share.coordinator.state.topic.min.isr": isr,
            "group.initial.rebalance.delay.ms": "0",
            # Two cores: fewer threads than Kafka's server-class defaults (3 network, 8 I/O).
            "num.network.threads": "2",
            "num.io.threads": "4",
            "background.threads": "4",
            "log.retention.hours": "24",
            "auto.create.topics.enable": "true",
        }
        if self.voters:
            props["controller.quorum.voters"] = ",".join(
                f"{node}@{LOOPBACK}:{port}" for node, port in sorted(self.voters.items())
            )
        else:
            props["controller.quorum.bootstrap.servers"] = f"{LOOPBACK}:{self.controller_port}"
        if self.security is not None and self.internal_port is not None and self.mtls_port is not None:
            props.update(
                self.security.properties(
                    port=self.port,
                    advertised_port=self.advertised_port,
                    internal_port=self.internal_port,
                    controller_port=self.controller_port,
                    mtls_port=self.mtls_port,
                )
            )
        props.update(self._overrides)
        return props

    def _format(self, workdir: Path) -> None:
        import subprocess

        props = self.properties(workdir)
        (workdir / "server.properties").write_text("".join(f"{k}={v}\n" for k, v in props.items()), "utf-8")
        (workdir / "server.properties").chmod(0o600)  # a secured node's holds the super user's password
        (workdir / "log4j2.properties").write_text(_LOG4J2.format(level="info"), "utf-8")
        (workdir / "log4j2-tool.properties").write_text(_LOG4J2.format(level="warn"), "utf-8")
        argv = [
            self.java.executable, "-Xmx256m", f"-Dlog4j2.configurationFile={workdir}/log4j2-tool.properties",
            "-cp", f"{self.libs}/*", "kafka.tools.StorageTool", "format", "--ignore-formatted",
            "-t", self.cluster_id, "-c", str(workdir / "server.properties"),
        ]  # fmt: skip
        if not self.voters:
            argv.append("--standalone")
        out = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        if out.returncode != 0:
            raise ServerStartError(
                self.name, f"StorageTool format exited {out.returncode}", (out.stdout + out.stderr)[-2000:]
            )


def start_apache_kafka(
    *,
    port: int = 0,
    advertised_port: int | None = None,
    heap: str = DEFAULT_HEAP,
    version: str = KAFKA_VERSION,
    ready_timeout: float = 60.0,
    overrides: Mapping[str, str] | None = None,
) -> ApacheKafkaBroker:
    """Start one Apache Kafka node on 127.0.0.1 (free ports unless given) and wait until it answers.

    Raises :class:`~cryptopipe.runtime.jvm.JavaNotFoundError` (no Java 17+),
    :class:`~cryptopipe.runtime.jvm.ArtifactResolutionError` (jars not cached and not downloadable)
    or :class:`ServerStartError`. ``advertised_port``: tell clients to connect there instead (a
    :class:`~cryptopipe.infra.proxy.TcpProxy` in front of the broker).
    """
    java = find_java(MIN_JAVA)
    libs = kafka_libs(version, java=java)
    broker = ApacheKafkaBroker(
        libs,
        java,
        port=port or free_port(LOOPBACK),
        controller_port=free_port(LOOPBACK),
        cluster_id=new_cluster_id(),
        advertised_port=advertised_port,
        heap=heap,
        version=version,
        ready_timeout=ready_timeout,
        overrides=overrides,
    ).start()
    if advertised_port is None:  # behind a proxy, clients reach it once the proxy has its target
        warm_producer_ids(broker.bootstrap_servers)
    log.info(
        "started Apache Kafka %s on %s (pid %s, ready in %.1f s, data in %s)",
        version,
        broker.bootstrap_servers,
        broker.pid,
        broker.startup_seconds,
        broker.workdir,
    )
    return broker


class KafkaCluster(StartStop):
    """``n`` Apache Kafka nodes on loopback forming one KRaft cluster (static controller quorum).

    Use as a context manager, or :meth:`start` / :meth:`stop`. ``brokers[i]`` is node ``i + 1``;
    kill one with ``brokers[i].kill()`` and bring it back with ``brokers[i].restart()``.
    """

    def __init__(
        self,
        size: int = 3,
        *,
        heap: str = "384m",
        version: str = KAFKA_VERSION,
        overrides: Mapping[str, str] | None = None,
        security: KafkaSecurity | None = None,
    ) -> None:
        if size < 1:
            raise ValueError(f"a cluster needs at least one broker, got {size}")
        self.size = size
        self.version = version
        self._heap = heap
        self._overrides = overrides
        self.security = security
        """TLS and SASL on every listener (see :mod:`cryptopipe.infra.kafka_security`); None: plaintext."""
        self.brokers: list[ApacheKafkaBroker] = []

    @property
    def replication(self) -> int:
        return min(self.size, 3)

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(b.bootstrap_servers for b in self.brokers)

    @property
    def internal_bootstrap_servers(self) -> str:
        """A secured cluster's INTERNAL listeners (the super user's way in)."""
        return ",".join(f"{LOOPBACK}:{b.internal_port}" for b in self.brokers if b.internal_port is not None)

    @property
    def mtls_bootstrap_servers(self) -> str:
        """A secured cluster's MTLS listeners (clients with a certificate of the run's CA)."""
        return ",".join(f"{LOOPBACK}:{b.mtls_port}" for b in self.brokers if b.mtls_port is not None)

    @property
    def kind(self) -> str:
        secured = ", SASL_SSL" if self.security is not None else ""
        return f"apache-kafka {self.version} ({self.size}-broker cluster{secured})"

    @property
    def _started(self) -> bool:
        return bool(self.brokers)

    def start(self, ready_timeout: float = 120.0) -> KafkaCluster:
        java = find_java(MIN_JAVA)
        libs = kafka_libs(self.version, java=java)
        cluster_id = new_cluster_id()
        ports = [(free_port(LOOPBACK), free_port(LOOPBACK)) for _ in range(self.size)]
        voters = {node: ports[node - 1][1] for node in range(1, self.size + 1)}
        self.brokers = [
            ApacheKafkaBroker(
                libs,
                java,
                port=port,
                controller_port=controller,
                cluster_id=cluster_id,
                node_id=node,
                voters=voters,
                replication=self.replication,
                heap=self._heap,
                version=self.version,
                ready_timeout=ready_timeout,
                overrides=self._overrides,
                security=self.security,
            )
            for node, (port, controller) in enumerate(ports, start=1)
        ]
        # Controllers wait for a quorum, so the nodes start together, from this thread (a child's
        # death signal fires when the thread that spawned it exits).
        try:
            for broker in self.brokers:
                broker.start(wait=False)
            for broker in self.brokers:
                broker.wait_ready()
        except BaseException:
            self.stop()
            raise
        log.info(
            "started a %d-broker Apache Kafka %s cluster at %s",
            self.size,
            self.version,
            self.bootstrap_servers,
        )
        return self

    def stop(self) -> None:
        # All at once: stopped one by one, the last node loses its quorum and hangs until killed.
        for broker in self.brokers:
            broker.request_stop()
        for broker in self.brokers:
            broker.stop()

    def broker(self, node_id: int) -> ApacheKafkaBroker:
        for b in self.brokers:
            if b.node_id == node_id:
                return b
        raise InfraError(f"no broker with node id {node_id} in {self.bootstrap_servers}")
