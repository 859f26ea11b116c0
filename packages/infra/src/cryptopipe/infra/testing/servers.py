"""Session servers for the tests, resolved as ``cryptopipe up`` resolves them, and a report of them.

``kafka`` and ``redis_server`` fail the session, with the reason, when no server can be had; which
ones ran is shown in the report header and the terminal summary.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from cryptopipe.infra.broker import kafka_metadata_ready
from cryptopipe.infra.errors import START_ERRORS
from cryptopipe.infra.kafka import (
    LOCAL_BROKER_ENV,
    TANSU_QUIRKS,
    KafkaEndpoint,
    local_broker_choice,
    resolve_kafka,
)
from cryptopipe.infra.redis_server import RedisEndpoint, resolve_redis
from cryptopipe.infra.tansu import start_tansu
from cryptopipe.schemas import KafkaSettings, RedisSettings, redact_url

if TYPE_CHECKING:
    from cryptopipe.infra.apache_kafka import KafkaCluster

log = logging.getLogger(__name__)

T = TypeVar("T")

_ENDPOINTS = pytest.StashKey[dict[str, str]]()


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
