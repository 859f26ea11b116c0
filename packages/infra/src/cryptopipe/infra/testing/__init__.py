"""pytest plugin and helpers: real Kafka and Redis for every package's tests.

Test tooling, not what ``cryptopipe up`` runs: it needs the ``testing`` extra
(``cryptopipe-infra[testing]``, which brings pytest). Registered in the repository's root
``conftest.py`` (``pytest_plugins = ["cryptopipe.infra.testing"]``), which loads the fixture
modules listed in :data:`pytest_plugins` below.

Servers are resolved exactly as ``cryptopipe up`` resolves them (see :func:`resolve_kafka`), once
per session; every test gets its own topic prefix and Redis key prefix, so tests never collide.
Set KAFKA_BOOTSTRAP_SERVERS / REDIS_URL to run the suite against servers of your own, and
CRYPTOPIPE_LOCAL_BROKER=apache|tansu|docker to force a local broker. When no server can be had, the
fixtures fail with the reason; they never skip.

- :mod:`~cryptopipe.infra.testing.servers`: ``kafka`` and ``redis_server`` (session), ``tansu_kafka``
  (session: the fallback broker, for the tests marked ``tansu`` that keep it honest),
  ``kafka_cluster`` (module: a 3-broker Apache Kafka cluster), and the report of which servers ran.
- :mod:`~cryptopipe.infra.testing.fixtures`: ``kafka_settings``, ``redis_settings``,
  ``redis_client``, ``topic_factory`` and ``eventually`` (function).
- :mod:`~cryptopipe.infra.testing.proxied`: ``proxied_kafka`` (a broker behind a pausable proxy).
- :mod:`~cryptopipe.infra.testing.secure`: ``secure_kafka`` (session: a secured Apache Kafka with
  one principal per service, by password or client certificate).
- Helpers to import: :func:`eventually`, :func:`produce`, :func:`create_topic`,
  :func:`consume_partition`, :func:`listening_ips`, :func:`require_prometheus_tool`.
"""

from importlib.util import find_spec

if find_spec("pytest") is None:
    raise ImportError(
        "cryptopipe.infra.testing is test tooling and needs pytest: pip install 'cryptopipe-infra[testing]'"
    )

from cryptopipe.infra.testing.helpers import eventually, listening_ips, require_prometheus_tool
from cryptopipe.infra.testing.kafka import consume_partition, create_topic, produce
from cryptopipe.infra.testing.proxied import ProxiedKafka

pytest_plugins = [
    "cryptopipe.infra.testing.servers",
    "cryptopipe.infra.testing.fixtures",
    "cryptopipe.infra.testing.proxied",
    "cryptopipe.infra.testing.secure",
]

__all__ = [
    "ProxiedKafka",
    "consume_partition",
    "create_topic",
    "eventually",
    "listening_ips",
    "produce",
    "require_prometheus_tool",
]
