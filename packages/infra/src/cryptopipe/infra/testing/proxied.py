"""``proxied_kafka``: a broker of the test's own that clients reach only through a pausable proxy."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from cryptopipe.infra.apache_kafka import start_apache_kafka
from cryptopipe.infra.errors import START_ERRORS
from cryptopipe.infra.kafka import TANSU_QUIRKS, KafkaEndpoint, KafkaQuirks, local_broker_choice
from cryptopipe.infra.process import LocalServer
from cryptopipe.infra.proxy import TcpProxy
from cryptopipe.infra.tansu import start_tansu
from cryptopipe.schemas import KafkaSettings

log = logging.getLogger(__name__)


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
