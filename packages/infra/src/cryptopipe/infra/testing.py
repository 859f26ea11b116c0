"""pytest plugin: real Kafka and Redis for every package's tests.

Registered in the repository's root ``conftest.py`` (``pytest_plugins = ["cryptopipe.infra.testing"]``).
Servers are resolved exactly as ``cryptopipe up`` resolves them (see :func:`resolve_kafka`), once
per session; every test gets its own topic prefix and Redis key prefix, so tests never collide.
Set KAFKA_BOOTSTRAP_SERVERS / REDIS_URL to run the suite against servers of your own, and
CRYPTOPIPE_LOCAL_BROKER=apache|tansu|docker to force a local broker. When no server can be had, the
fixtures fail with the reason; they never skip.

Fixtures: ``kafka`` and ``redis_server`` (session), ``kafka_settings``, ``redis_settings``,
``redis_client``, ``topic_factory``, ``proxied_kafka`` and ``eventually`` (function);
``tansu_kafka`` (session: the fallback broker, for the tests marked ``tansu`` that keep it
honest) and ``kafka_cluster`` (module: a 3-broker Apache Kafka cluster).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from cryptopipe.infra.broker import kafka_metadata_ready
from cryptopipe.infra.errors import START_ERRORS
from cryptopipe.infra.kafka import (
    LOCAL_BROKER_ENV,
    TANSU_QUIRKS,
    KafkaEndpoint,
    KafkaQuirks,
    local_broker_choice,
    resolve_kafka,
)
from cryptopipe.infra.process import LocalServer
from cryptopipe.infra.proxy import TcpProxy
from cryptopipe.infra.redis_server import RedisEndpoint, resolve_redis
from cryptopipe.infra.tansu import start_tansu
from cryptopipe.schemas import KafkaSettings, RedisSettings, TopicSpec, redact_url

if TYPE_CHECKING:
    import redis

    from cryptopipe.infra.apache_kafka import KafkaCluster

log = logging.getLogger(__name__)

T = TypeVar("T")

_ENDPOINTS = pytest.StashKey[dict[str, str]]()


def require_prometheus_tool(binary: str) -> str:
    """The path of ``prometheus`` or ``promtool``. Missing, it fails the test (``.ci/run`` and
    ``apt-get install -y prometheus`` install both), unless CRYPTOPIPE_ALLOW_NO_PROMETHEUS=1 says
    this machine runs without it: then the test is skipped, with that reason."""
    path = shutil.which(binary)
    if path is None:
        message = (
            f"{binary} not on PATH: apt-get install -y prometheus (or set CRYPTOPIPE_ALLOW_NO_PROMETHEUS=1)"
        )
        if os.environ.get("CRYPTOPIPE_ALLOW_NO_PROMETHEUS") == "1":
            pytest.skip(message)
        pytest.fail(message)
    return path


def eventually(
    condition: Callable[[], T], timeout: float = 30.0, interval: float = 0.05, message: str = ""
) -> T:
    """Poll ``condition()`` until it returns something truthy, and return that value.

    An ``AssertionError`` raised by the condition counts as "not yet" (so conditions may use
    ``assert``); any other exception propagates at once. On timeout, raise AssertionError with
    ``message`` and the last value or assertion seen.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = condition()
        except AssertionError as exc:
            last = exc
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{message or 'condition not met'} (after {timeout:g} s; last: {last!r})")
        time.sleep(interval)


def listening_ips(pid: int) -> set[str]:
    """The addresses process ``pid`` listens on (TCP): a loopback-only server gives {"127.0.0.1"}."""
    import psutil

    connections = psutil.Process(pid).net_connections("tcp")
    return {c.laddr.ip for c in connections if c.status == psutil.CONN_LISTEN}


def consume_partition(config: dict[str, Any], topic: str, count: int, partition: int = 0) -> list[bytes]:
    """Read ``partition`` of ``topic`` from offset 0 until ``count`` values arrived (60 s at most)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({**config, "group.id": "unused", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, partition, 0)])
    received: list[bytes] = []
    try:

        def done() -> bool:
            received.extend(m.value() for m in consumer.consume(1000, timeout=0.2) if m.error() is None)
            return len(received) >= count

        eventually(done, timeout=60, message=f"only {len(received)} of {count} consumed")
    finally:
        consumer.close()
    return received


def produce(
    settings: KafkaSettings,
    topic: str,
    records: Iterable[tuple[bytes | None, bytes]],
    **config: Any,
) -> int:
    """Produce ``(key, value)`` records and wait for every acknowledgement; returns the count.

    Batched (``linger.ms`` 20, at most 100 records a batch, unless ``config`` says otherwise), so a
    broker sees multi-record batches as it does from ingest; a full local queue waits, not fails.
    """
    from confluent_kafka import Producer

    producer = Producer({**settings.client_config(), "linger.ms": 20, "batch.num.messages": 100, **config})
    count = 0
    for key, value in records:
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.05)
        count += 1
    assert producer.flush(30) == 0, "producer could not deliver everything"
    return count


def _unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


# --- session servers -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def _infra_stack() -> Iterator[contextlib.ExitStack]:
    with contextlib.ExitStack() as stack:
        yield stack


def _session_server(
    request: pytest.FixtureRequest,
    name: str,
    kind: str,
    resolve: Callable[[], T],
    check: Callable[[T], None],
) -> T:
    """``resolve()`` the session's ``name`` ``kind`` (``"Kafka"``, ``"broker"``) and ``check`` that it
    answers; fail the session, with the reason, when it cannot be had. The endpoint is logged and
    shown in the summary."""
    try:
        endpoint = resolve()
    except START_ERRORS as exc:
        pytest.fail(f"no {name} {kind} for the tests: {exc}", pytrace=False)
    check(endpoint)
    request.config.stash.setdefault(_ENDPOINTS, {})[name.lower()] = str(endpoint)
    log.info("tests use %s: %s", name, endpoint)
    return endpoint


@pytest.fixture(scope="session")
def kafka(request: pytest.FixtureRequest, _infra_stack: contextlib.ExitStack) -> KafkaEndpoint:
    """The session's broker: configured, or started (testcontainers, local Apache Kafka, Tansu)."""
    return _session_server(
        request, "Kafka", "broker", lambda: resolve_kafka(KafkaSettings(), stack=_infra_stack), _check_kafka
    )


def _check_kafka(endpoint: KafkaEndpoint) -> None:
    if endpoint.server is None and not kafka_metadata_ready(
        endpoint.bootstrap_servers, timeout=30, **_security(endpoint.settings)
    ):
        pytest.fail(f"Kafka {endpoint} did not answer a metadata request within 30 s", pytrace=False)


def _security(settings: KafkaSettings) -> dict[str, str]:
    return {k: v for k, v in settings.client_config().items() if k != "bootstrap.servers"}


@pytest.fixture(scope="session")
def redis_server(request: pytest.FixtureRequest, _infra_stack: contextlib.ExitStack) -> RedisEndpoint:
    """The session's Redis: configured (REDIS_URL), or started (testcontainers, local redis-server)."""
    return _session_server(
        request, "Redis", "server", lambda: resolve_redis(RedisSettings(), stack=_infra_stack), _check_redis
    )


def _check_redis(endpoint: RedisEndpoint) -> None:
    if endpoint.server is not None:
        return
    import redis as redis_lib

    client = redis_lib.Redis.from_url(endpoint.url.get_secret_value(), socket_connect_timeout=10)
    try:
        client.ping()
    except redis_lib.RedisError as exc:
        pytest.fail(f"Redis {endpoint} did not answer PING: {exc}", pytrace=False)
    finally:
        client.close()


# --- per-test settings and clients ---------------------------------------------------------------


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


def create_topic(
    endpoint: KafkaEndpoint,
    name: str,
    partitions: int = 3,
    *,
    settings: KafkaSettings | None = None,
    timeout: float = 30.0,
    replication: int = 1,
) -> str:
    """Create ``name`` with ``partitions`` partitions and wait until metadata shows every leader."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic

    config: dict[str, Any] = {
        **(settings or endpoint.settings).client_config(),
        "bootstrap.servers": endpoint.bootstrap_servers,
    }
    client = AdminClient(config)
    futures = client.create_topics(
        [NewTopic(name, partitions, replication)], operation_timeout=timeout, request_timeout=timeout
    )
    futures[name].result(timeout=timeout)

    def visible() -> bool:
        try:
            metadata = client.list_topics(topic=name, timeout=5).topics.get(name)
        except KafkaException:
            return False
        return (
            metadata is not None
            and metadata.error is None
            and len(metadata.partitions) == partitions
            and all(p.leader >= 0 for p in metadata.partitions.values())
        )

    eventually(visible, timeout=timeout, message=f"topic {name} never showed {partitions} partitions")
    return name


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


@dataclass(frozen=True)
class ProxiedKafka:
    """A private broker reachable only through ``proxy``: pause the proxy to cut clients off."""

    endpoint: KafkaEndpoint
    proxy: TcpProxy
    broker: LocalServer

    @property
    def settings(self) -> KafkaSettings:
        return self.endpoint.settings


def _proxied_broker(
    stack: contextlib.ExitStack, proxy: TcpProxy
) -> tuple[LocalServer, int, str, KafkaQuirks]:
    """Apache Kafka when Java and its jars can be had (the real thing), else Tansu."""
    from cryptopipe.infra.apache_kafka import start_apache_kafka

    if local_broker_choice() != "tansu":
        try:
            apache = stack.enter_context(start_apache_kafka(advertised_port=proxy.port, heap="256m"))
        except START_ERRORS as exc:
            log.warning("proxied_kafka: no local Apache Kafka (%s); using Tansu", exc)
        else:
            return apache, apache.port, apache.kind, KafkaQuirks()
    tansu = stack.enter_context(start_tansu(advertised_port=proxy.port))
    return tansu, tansu.port, tansu.kind, TANSU_QUIRKS


@pytest.fixture
def proxied_kafka(kafka_settings: KafkaSettings) -> Iterator[ProxiedKafka]:
    """A broker of this test's own behind a :class:`TcpProxy` (``proxy.pause()``/``resume()``).

    A local Apache Kafka (Tansu when $CRYPTOPIPE_LOCAL_BROKER=tansu or Java is missing),
    whatever the session broker is, since only a local broker can be put behind the proxy.
    """
    with contextlib.ExitStack() as stack:
        proxy = stack.enter_context(TcpProxy())
        broker, port, kind, quirks = _proxied_broker(stack, proxy)
        proxy.target = ("127.0.0.1", port)
        bootstrap = f"127.0.0.1:{proxy.port}"
        settings = kafka_settings.model_copy(update={"bootstrap_servers": bootstrap})
        endpoint = KafkaEndpoint(bootstrap, kind + " (behind TcpProxy)", quirks, settings, broker)
        yield ProxiedKafka(endpoint, proxy, broker)


@pytest.fixture(scope="session")
def tansu_kafka(_infra_stack: contextlib.ExitStack) -> KafkaEndpoint:
    """A Tansu broker for the session: the last-resort fallback, kept honest by tests marked ``tansu``."""
    try:
        broker = _infra_stack.enter_context(start_tansu())
    except START_ERRORS as exc:
        pytest.fail(f"no Tansu broker for the fallback tests: {exc}", pytrace=False)
    settings = KafkaSettings().model_copy(update={"bootstrap_servers": broker.bootstrap_servers})
    return KafkaEndpoint(broker.bootstrap_servers, broker.kind, TANSU_QUIRKS, settings, broker)


@pytest.fixture(scope="module")
def kafka_cluster() -> Iterator[KafkaCluster]:
    """A 3-broker Apache Kafka cluster on loopback (replication factor 3, min.insync.replicas 2)."""
    from cryptopipe.infra.apache_kafka import KafkaCluster

    try:
        cluster = KafkaCluster(3).start()
    except START_ERRORS as exc:
        pytest.fail(f"no 3-broker Apache Kafka cluster: {exc}", pytrace=False)
    try:
        yield cluster
    finally:
        cluster.stop()


# --- reporting -----------------------------------------------------------------------------------


def pytest_report_header(config: pytest.Config) -> list[str]:
    kafka_bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    redis_url = os.environ.get("REDIS_URL")
    try:
        choice = local_broker_choice()
    except START_ERRORS as exc:
        choice = f"invalid ({exc})"
    return [
        "kafka: "
        + (
            f"configured {kafka_bootstrap}"
            if kafka_bootstrap
            else f"resolved on first use ({LOCAL_BROKER_ENV}={choice}); see the summary"
        ),
        "redis: " + (f"configured {redact_url(redis_url)}" if redis_url else "resolved on first use"),
    ]


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    endpoints = config.stash.get(_ENDPOINTS, {})
    if endpoints:
        terminalreporter.section("cryptopipe test servers")
        for name, description in endpoints.items():
            terminalreporter.write_line(f"{name}: {description}")
