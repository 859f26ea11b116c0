"""Find or start the servers the pipeline needs: Kafka, Redis, Prometheus.

``resolve_kafka`` and ``resolve_redis`` serve both ``cryptopipe up`` (embedded mode) and the test
fixtures in :mod:`cryptopipe.infra.testing` (the ``testing`` extra). Order: explicit
configuration, then a container when a Docker engine answers, then a local server process (for
Kafka, Apache Kafka from Maven Central jars, else Tansu; for Redis, ``redis-server``). Local
servers bind 127.0.0.1 on a free port and stop with the ``ExitStack`` they were registered on.
"""

from cryptopipe.infra.apache_kafka import ApacheKafkaBroker, KafkaCluster, start_apache_kafka
from cryptopipe.infra.broker import kafka_metadata_ready
from cryptopipe.infra.docker import docker_available
from cryptopipe.infra.errors import (
    START_ERRORS,
    BinaryNotFoundError,
    InfraError,
    ResolutionError,
    ServerStartError,
)
from cryptopipe.infra.kafka import LOCAL_BROKER_ENV, KafkaEndpoint, KafkaQuirks, resolve_kafka
from cryptopipe.infra.process import LocalServer
from cryptopipe.infra.prometheus import (
    PrometheusServer,
    resolve_prometheus_binary,
    start_embedded_prometheus,
    start_prometheus,
)
from cryptopipe.infra.proxy import TcpProxy
from cryptopipe.infra.redis_server import (
    RedisEndpoint,
    RedisServer,
    find_redis_server,
    resolve_redis,
    start_redis,
)
from cryptopipe.infra.tansu import TansuBroker, find_tansu, start_tansu
from cryptopipe.runtime.net import free_port

__all__ = [
    "LOCAL_BROKER_ENV",
    "START_ERRORS",
    "ApacheKafkaBroker",
    "BinaryNotFoundError",
    "InfraError",
    "KafkaCluster",
    "KafkaEndpoint",
    "KafkaQuirks",
    "LocalServer",
    "PrometheusServer",
    "RedisEndpoint",
    "RedisServer",
    "ResolutionError",
    "ServerStartError",
    "TansuBroker",
    "TcpProxy",
    "docker_available",
    "find_redis_server",
    "find_tansu",
    "free_port",
    "kafka_metadata_ready",
    "resolve_kafka",
    "resolve_prometheus_binary",
    "resolve_redis",
    "start_apache_kafka",
    "start_embedded_prometheus",
    "start_prometheus",
    "start_redis",
    "start_tansu",
]
