"""A real Apache Kafka without Docker: jars from Maven Central (cached, verified), KRaft on loopback."""

from __future__ import annotations

import contextlib
import logging
import shutil
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from cryptopipe.infra import KafkaCluster, ResolutionError, resolve_kafka, start_apache_kafka
from cryptopipe.infra.apache_kafka import KAFKA_VERSION, kafka_libs, new_cluster_id
from cryptopipe.infra.testing import consume_partition, create_topic, eventually, listening_ips
from cryptopipe.runtime import jvm as infra_jars
from cryptopipe.runtime.jvm import MANIFEST, ArtifactResolutionError, JavaNotFoundError, find_java
from cryptopipe.schemas import KafkaSettings, settings_of

pytestmark = pytest.mark.slow


def _produce(bootstrap: str, topic: str, values: list[bytes], **config: object) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, **config})
    for value in values:
        producer.produce(topic, value, partition=0)
    assert producer.flush(60) == 0


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_local_apache_kafka_binds_loopback_and_keeps_data_across_a_restart() -> None:
    with start_apache_kafka(heap="256m") as broker:
        assert broker.kind == f"apache-kafka {KAFKA_VERSION}"
        assert broker.pid is not None
        assert listening_ips(broker.pid) == {"127.0.0.1"}
        values = [f"m{i}".encode() for i in range(50)]
        # The first idempotent producer on the fresh broker gets its id at once: librdkafka logs
        # no "Coordinator load in progress" retry (the start took that answer: warm_producer_ids).
        said = _Collect()
        client_log = logging.getLogger("test.first-producer")
        client_log.addHandler(said)
        try:
            _produce(broker.bootstrap_servers, "durable", values, logger=client_log)
        finally:
            client_log.removeHandler(said)
        assert not [line for line in said.lines if "Coordinator load in progress" in line], said.lines
        data_dir = broker.workdir
        broker.kill()  # as a crash would: no clean shutdown
        broker.restart()
        assert broker.workdir == data_dir
        assert consume_partition({"bootstrap.servers": broker.bootstrap_servers}, "durable", 50) == values
        workdir = broker.workdir
    assert workdir is not None
    assert not workdir.exists()


def test_high_watermark_counts_records_not_batches(kafka) -> None:  # type: ignore[no-untyped-def]
    """The Tansu bug the consumers work around does not exist on the default broker."""
    if not kafka.kind.startswith("apache-kafka"):
        pytest.skip(f"the session broker is {kafka.kind}, not a local Apache Kafka")
    topic = create_topic(kafka, f"hwm-{id(kafka)}", partitions=1)
    _produce(kafka.bootstrap_servers, topic, [b"x"] * 100, **{"linger.ms": 50})
    consumer = Consumer({"bootstrap.servers": kafka.bootstrap_servers, "group.id": "hwm"})
    try:
        assert consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10) == (0, 100)
    finally:
        consumer.close()


def test_the_jar_cache_is_verified_and_works_offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    java = find_java()
    libs = kafka_libs(java=java)  # warm (the session broker resolved it)
    assert (libs.parent / MANIFEST).exists()
    assert infra_jars.verify_manifest(libs) == []

    # Offline: no resolver at all. The warm cache still serves, with no network.
    monkeypatch.setenv(infra_jars.IVY_JAR_ENV, str(tmp_path / "no-ivy.jar"))
    monkeypatch.setenv("PATH", str(Path(java.executable).parent))
    assert kafka_libs(java=java) == libs

    # A damaged copy is caught by its SHA-256 (checked on a copy of the cache, not the real one).
    copy = tmp_path / "cache"
    shutil.copytree(libs.parent, copy / "kafka" / KAFKA_VERSION)
    jar = next((copy / "kafka" / KAFKA_VERSION / "libs").glob("kafka-clients-*.jar"))
    jar.write_bytes(jar.read_bytes()[:-10])
    problems = infra_jars.verify_manifest(jar.parent)
    assert problems == [f"{jar.name} does not match its SHA-256"]


def test_cold_cache_offline_falls_back_to_tansu_with_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(infra_jars.CACHE_ENV, str(tmp_path / "cold"))
    # Offline: every download goes to a proxy port where nothing listens.
    monkeypatch.setenv(
        "JAVA_TOOL_OPTIONS",
        "-Dhttp.proxyHost=127.0.0.1 -Dhttp.proxyPort=9 -Dhttps.proxyHost=127.0.0.1 -Dhttps.proxyPort=9",
    )
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    with pytest.raises(ArtifactResolutionError, match="could not resolve"):
        kafka_libs()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="cryptopipe.infra"), contextlib.ExitStack() as stack:
        endpoint = resolve_kafka(settings_of(KafkaSettings, bootstrap_servers=""), stack=stack)
        assert endpoint.kind.startswith("tansu")
    apache_lines = [r.getMessage() for r in caplog.records if "apache unavailable" in r.getMessage()]
    assert len(apache_lines) == 1
    assert "\n" not in apache_lines[0]
    assert "could not resolve" in apache_lines[0]
    assert any("fallback broker" in r.getMessage() for r in caplog.records)


def test_missing_java_is_one_line_saying_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    infra_jars._probe_java.cache_clear()
    with pytest.raises(JavaNotFoundError, match="openjdk-17-jre-headless") as info:
        find_java()
    assert "\n" not in str(info.value)
    with contextlib.ExitStack() as stack, pytest.raises(ResolutionError, match="openjdk-17"):
        resolve_kafka(settings_of(KafkaSettings, bootstrap_servers=""), stack=stack, prefer="apache")


def test_too_old_java_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "bin" / "java"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'openjdk version \"11.0.2\" 2019-01-15' >&2\n")
    fake.chmod(0o755)
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))
    infra_jars._probe_java.cache_clear()
    with pytest.raises(JavaNotFoundError, match=r"11\.0\.2 .* too old \(need 17\+\)"):
        find_java()


@pytest.mark.cluster
def test_three_broker_cluster_replicates_and_survives_a_killed_leader() -> None:
    with KafkaCluster(3) as cluster:
        assert len(cluster.brokers) == 3
        for broker in cluster.brokers:
            assert broker.pid is not None
            assert listening_ips(broker.pid) == {"127.0.0.1"}
        admin = AdminClient({"bootstrap.servers": cluster.bootstrap_servers})
        config = admin.describe_configs([ConfigResource(ConfigResource.Type.BROKER, "1")])
        broker_config = next(iter(config.values())).result()
        assert broker_config["min.insync.replicas"].value == "2"
        assert broker_config["default.replication.factor"].value == "3"

        admin.create_topics([NewTopic("replicated", 1, 3)])["replicated"].result(30)
        values = [f"m{i}".encode() for i in range(100)]
        _produce(cluster.bootstrap_servers, "replicated", values[:50], acks="all")

        def leader() -> int:
            partition = admin.list_topics("replicated", timeout=10).topics["replicated"].partitions[0]
            assert len(partition.isrs) == 3
            return partition.leader

        old_leader = eventually(leader, timeout=30)
        cluster.broker(old_leader).kill()

        def new_leader() -> int:
            partition = admin.list_topics("replicated", timeout=10).topics["replicated"].partitions[0]
            assert partition.leader not in (-1, old_leader)
            return partition.leader

        eventually(new_leader, timeout=60, message="no new leader was elected")
        _produce(cluster.bootstrap_servers, "replicated", values[50:], acks="all")
        cluster.broker(old_leader).restart()
        assert (
            consume_partition({"bootstrap.servers": cluster.bootstrap_servers}, "replicated", 100) == values
        )


def test_cluster_ids_never_start_with_a_dash() -> None:
    """kafka-storage would read "-xyz" as an option; 1 random id in 64 starts with "-"."""
    ids = [new_cluster_id() for _ in range(5000)]
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)
    assert len(set(ids)) == len(ids)
