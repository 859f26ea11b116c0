"""``cryptopipe kafka-cluster``: a real Apache Kafka cluster as a child process, used, then stopped.

The command runs as users run it (``python -m cryptopipe.cli kafka-cluster``): one 3-broker cluster
is started for the module, reached through the bootstrap servers its ``--json`` file names, and
stopped with SIGINT, as Ctrl-C would. ``--run-for`` is a safety net, so the cluster never outlives
the tests even when they fail.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic  # type: ignore[attr-defined]

from cryptopipe.infra.cli import EXIT_UNAVAILABLE
from cryptopipe.infra.testing import eventually
from cryptopipe.runtime import ensure_topics, stop_process
from cryptopipe.runtime import jvm as infra_jars
from cryptopipe.schemas import KafkaSettings, TopicSpec, settings_of

COMMAND = [sys.executable, "-m", "cryptopipe.cli", "kafka-cluster"]
#: Longer than the module's tests take, short enough that a failed run does not leave brokers for long.
SAFETY_NET_S = 120


@dataclass
class CliCluster:
    proc: subprocess.Popen[bytes]
    info: dict[str, Any]
    stdout: Path
    stderr: Path

    @property
    def bootstrap(self) -> str:
        return str(self.info["bootstrap_servers"])

    def output(self) -> tuple[str, str]:
        return self.stdout.read_text(), self.stderr.read_text()


def _start(workdir: Path, *args: str) -> CliCluster:
    json_path = workdir / "cluster.json"
    stdout, stderr = workdir / "stdout.txt", workdir / "stderr.txt"
    with open(stdout, "wb") as out, open(stderr, "wb") as err:
        proc = subprocess.Popen([*COMMAND, *args, "--json", str(json_path)], stdout=out, stderr=err)

    def ready() -> dict[str, Any]:
        if proc.poll() is not None:
            pytest.fail(
                f"kafka-cluster exited with {proc.returncode} before it was ready:\n{stderr.read_text()}"
            )
        assert json_path.exists(), "no JSON yet"
        document = json.loads(json_path.read_text())
        assert isinstance(document, dict)
        return document

    try:
        info = eventually(ready, timeout=240, interval=0.2, message="the cluster was not ready in 240 s")
    except BaseException:
        _terminate(proc)
        raise
    return CliCluster(proc, info, stdout, stderr)


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    stop_process(proc, grace=60.0)


@pytest.fixture(scope="module")
def cli_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CliCluster]:
    cluster = _start(
        tmp_path_factory.mktemp("kafka-cluster"), "--brokers", "3", "--run-for", str(SAFETY_NET_S)
    )
    try:
        yield cluster
    finally:
        _terminate(cluster.proc)


def _gone(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


@pytest.mark.slow
@pytest.mark.cluster
def test_every_broker_listens_on_loopback_only_and_the_command_says_how_to_use_it(
    cli_cluster: CliCluster,
) -> None:
    brokers = cli_cluster.info["brokers"]
    assert [b["node_id"] for b in brokers] == [1, 2, 3]
    assert cli_cluster.info["version"] == "4.1.1"
    assert cli_cluster.bootstrap == ",".join(f"127.0.0.1:{b['port']}" for b in brokers)
    for broker in brokers:
        connections = psutil.Process(broker["pid"]).net_connections("tcp")
        listening = {(c.laddr.ip, c.laddr.port) for c in connections if c.status == psutil.CONN_LISTEN}
        assert {ip for ip, _port in listening} == {"127.0.0.1"}, f"node {broker['node_id']}: {listening}"
        assert ("127.0.0.1", broker["port"]) in listening
        assert Path(broker["data_dir"]).is_dir()
    stdout, _stderr = cli_cluster.output()
    [line] = stdout.splitlines()  # one line, with the servers and how to use them
    assert f"KAFKA_BOOTSTRAP_SERVERS={cli_cluster.bootstrap} uv run cryptopipe up" in line


@pytest.mark.slow
@pytest.mark.cluster
def test_produce_and_consume_with_acks_all(cli_cluster: CliCluster) -> None:
    topic = f"cli-acks-all-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": cli_cluster.bootstrap})
    admin.create_topics([NewTopic(topic, 1)])[topic].result(60)  # the broker's default replication
    values = [f"m{i}".encode() for i in range(200)]
    producer = Producer(
        {"bootstrap.servers": cli_cluster.bootstrap, "acks": "all", "enable.idempotence": True}
    )
    for value in values:
        producer.produce(topic, value, partition=0)
    assert producer.flush(60) == 0

    consumer = Consumer({"bootstrap.servers": cli_cluster.bootstrap, "group.id": topic})
    consumer.assign([TopicPartition(topic, 0, 0)])
    received: list[bytes] = []
    try:

        def all_consumed() -> bool:
            for message in consumer.consume(500, timeout=0.5):
                value = message.value()
                if message.error() is None and value is not None:
                    received.append(value)
            return len(received) >= len(values)

        eventually(all_consumed, timeout=60, message=f"only {len(received)} of {len(values)} consumed")
    finally:
        consumer.close()
    assert received == values


@pytest.mark.slow
@pytest.mark.cluster
def test_our_topics_get_replication_factor_3_and_min_insync_replicas_2(cli_cluster: CliCluster) -> None:
    """ensure_topics with the default replication (-1, the broker's) on the cluster: RF 3, min ISR 2."""
    spec = TopicSpec(f"cli-prices-{uuid.uuid4().hex[:8]}", partitions=3)
    created = ensure_topics(
        settings_of(KafkaSettings, bootstrap_servers=cli_cluster.bootstrap), [spec], timeout_s=30
    )
    assert created == [spec.name]
    admin = AdminClient({"bootstrap.servers": cli_cluster.bootstrap})
    partitions = admin.list_topics(spec.name, timeout=30).topics[spec.name].partitions
    assert len(partitions) == 3
    assert all(len(p.replicas) == 3 for p in partitions.values()), partitions
    topic_config = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, spec.name)])
    config = next(iter(topic_config.values())).result(30)
    assert config["min.insync.replicas"].value == "2"
    assert config["retention.ms"].value == str(spec.retention_ms)
    broker_config = admin.describe_configs([ConfigResource(ConfigResource.Type.BROKER, "1")])
    config = next(iter(broker_config.values())).result(30)
    assert config["default.replication.factor"].value == "3"
    assert config["min.insync.replicas"].value == "2"


@pytest.mark.slow
@pytest.mark.cluster
def test_ctrl_c_stops_every_broker_and_exits_0(cli_cluster: CliCluster) -> None:
    cli_cluster.proc.send_signal(signal.SIGINT)
    assert cli_cluster.proc.wait(90) == 0
    _stdout, stderr = cli_cluster.output()
    assert "Traceback" not in stderr
    assert "stopping 3 broker(s) (SIGINT)" in stderr
    assert "stopped every broker" in stderr
    for broker in cli_cluster.info["brokers"]:
        assert _gone(broker["pid"]), f"node {broker['node_id']} (pid {broker['pid']}) outlived the command"
        assert not Path(broker["data_dir"]).exists()


@pytest.mark.slow
def test_one_broker_runs_for_the_given_time_and_stops(tmp_path: Path) -> None:
    cluster = _start(tmp_path, "--brokers", "1", "--run-for", "1")
    assert cluster.proc.wait(90) == 0
    [broker] = cluster.info["brokers"]
    assert cluster.bootstrap == f"127.0.0.1:{broker['port']}"
    assert _gone(broker["pid"])
    _stdout, stderr = cluster.output()
    assert "--run-for 1 s is over" in stderr
    assert "Traceback" not in stderr


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_missing_java_is_one_line_naming_what_to_install_and_exit_2(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    env["PATH"] = str(tmp_path)  # an empty directory: no java anywhere
    result = _run(env, "--brokers", "3")
    assert result.returncode == EXIT_UNAVAILABLE == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("cryptopipe kafka-cluster: no Java runtime found")
    assert "openjdk-17" in line
    assert result.stdout == ""


@pytest.mark.slow
def test_offline_with_a_cold_cache_is_one_error_line_and_exit_2(tmp_path: Path) -> None:
    env = dict(os.environ)
    env[infra_jars.CACHE_ENV] = str(tmp_path / "cold")
    # Offline: every download goes to a proxy port where nothing listens.
    env["JAVA_TOOL_OPTIONS"] = (
        "-Dhttp.proxyHost=127.0.0.1 -Dhttp.proxyPort=9 -Dhttps.proxyHost=127.0.0.1 -Dhttps.proxyPort=9"
    )
    result = _run(env)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.splitlines()[-1]
    assert last.startswith("cryptopipe kafka-cluster: ")
    assert "could not resolve the artifacts" in last
    assert "first run: resolving Apache Kafka 4.1.1 from Maven Central" in result.stderr
    assert result.stdout == ""
