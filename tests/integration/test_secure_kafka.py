"""`cryptopipe up` on a secured Apache Kafka (SASL_SSL, SCRAM-SHA-512, ACLs), pointed at it only by
KAFKA_PRINCIPALS_FILE: each service logs in as its own principal and, with REDIS_USERS_FILE, to
Redis as its own ACL user; the whole pipeline, the Spark job and its express lane included, runs
and the books balance; no secret of the run shows up in any process's argv or environment, any
log, the summary or any /metrics page.

A wrong password or a plaintext client is refused before anything starts, with one line naming
the setting; a password rotated while a service runs stops it with one line naming the setting;
a service used beyond its ACLs is refused, counted and logged. The cluster is the session's: the
run has topics of its own (a topic prefix granted like the cluster's), and users of its own.
"""

from __future__ import annotations

import http.client
import json
import logging
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil
import pytest
from confluent_kafka import KafkaError, Producer

from cryptopipe.infra.kafka_security import new_password
from cryptopipe.infra.redis_acl import SERVICES, create_service_users, url_for_user, username
from cryptopipe.infra.secure_kafka import SecureKafkaCluster
from cryptopipe.infra.testing import eventually
from cryptopipe.observability import Scrape
from cryptopipe.observability import metrics as m
from cryptopipe.pipeline.preflight import check_kafka
from cryptopipe.runtime import final_scrape, free_port, read_stats, stop_process, write_private
from cryptopipe.schemas import ConfigError, KafkaSettings, RedisSettings

from .conftest import clean_env, full_log, running_up

pytestmark = pytest.mark.slow

_QUIET = ["--no-dashboard", "--no-prometheus"]


@pytest.fixture(scope="module")
def principals_file(secure_kafka: SecureKafkaCluster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("secure") / "cluster.json"
    path.write_text(json.dumps(secure_kafka.describe()))
    return path


def _env(principals_file: Path, redis_settings: RedisSettings, **extra: str) -> dict[str, str]:
    servers = {
        "KAFKA_PRINCIPALS_FILE": str(principals_file),
        "REDIS_URL": redis_settings.url.get_secret_value(),
        "REDIS_KEY_PREFIX": redis_settings.key_prefix,
    }
    return clean_env(**(servers | extra))


def _refused(env: dict[str, str]) -> str:
    """`up` with ``env``: it must exit 2 before starting anything; its one line of output."""
    result = subprocess.run(
        [sys.executable, "-m", "cryptopipe.cli", "up", "--run-for", "5", "--no-alerting", *_QUIET],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    [line] = (result.stdout + result.stderr).splitlines()
    return line


def test_a_wrong_password_is_one_line_naming_the_setting(
    principals_file: Path, redis_settings: RedisSettings, tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong.password"
    wrong.write_text("not-the-password\n")
    line = _refused(_env(principals_file, redis_settings, KAFKA_SASL_PASSWORD_FILE=str(wrong)))
    assert line.startswith("cryptopipe up: KAFKA_SASL_PASSWORD_FILE: Kafka at 127.0.0.1:"), line
    assert "refused user 'pipeline'" in line
    assert "wrong user name or password" in line


def test_a_plaintext_client_is_refused_by_the_tls_listener(
    secure_kafka: SecureKafkaCluster, redis_settings: RedisSettings
) -> None:
    env = clean_env(
        KAFKA_BOOTSTRAP_SERVERS=secure_kafka.bootstrap_servers,
        REDIS_URL=redis_settings.url.get_secret_value(),
    )
    line = _refused(env)
    assert line.startswith("cryptopipe up: KAFKA_SECURITY_PROTOCOL=PLAINTEXT: Kafka at 127.0.0.1:"), line
    assert "another protocol" in line


def _produce(settings: KafkaSettings, topic: str) -> KafkaError | None:
    """Produce one record; its delivery error, or None once the broker acknowledged it."""
    quiet = logging.getLogger("test.secure.mtls.librdkafka")
    quiet.propagate = False
    outcome: list[KafkaError | None] = []
    config = {**settings.client_config(), "logger": quiet, "message.timeout.ms": 10000}
    producer = Producer(config)
    producer.produce(topic, b"v", b"k", on_delivery=lambda error, _msg: outcome.append(error))
    producer.flush(15)
    assert outcome, "no delivery report within 15 s"
    return outcome[0]


def test_a_client_with_its_certificate_is_its_principal_on_the_mtls_listener(
    secure_kafka: SecureKafkaCluster,
) -> None:
    """mTLS: the certificate CN=alerting is principal alerting, with that principal's ACLs."""
    alerting = secure_kafka.mtls_settings("alerting")
    assert (alerting.security_protocol, alerting.sasl_username) == ("SSL", "")
    assert _produce(alerting, "alerts") is None  # its job
    refused = _produce(alerting, "prices")  # not its job: the ACLs apply to the certificate's name
    assert refused is not None
    assert refused.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_a_client_without_a_certificate_is_refused_by_the_mtls_listener_in_one_line(
    secure_kafka: SecureKafkaCluster,
) -> None:
    bare = secure_kafka.mtls_settings("alerting", ssl_certificate_location="", ssl_key_location="")
    with pytest.raises(ConfigError) as refusal:
        check_kafka(bare)
    line = str(refusal.value)
    assert "\n" not in line
    assert line.startswith(
        f"KAFKA_SSL_CERTIFICATE_LOCATION: Kafka at {secure_kafka.cluster.mtls_bootstrap_servers} "
    ), line


def test_a_service_beyond_its_acls_is_refused_counted_and_reported(
    principals_file: Path, redis_settings: RedisSettings, tmp_path: Path
) -> None:
    """The prices consumer run with ingest's principal, which may join no group."""
    port = free_port()
    env = _env(
        principals_file, redis_settings, KAFKA_PRINCIPAL="ingest", PRICES_CONSUMER_METRICS_PORT=str(port)
    )
    log = tmp_path / "prices-consumer.log"
    proc = _start_prices_consumer(env, log)
    try:

        def refusals() -> float:
            return _scrape_while_running(proc, log, port).total(
                m.ERRORS, component="prices-consumer", reason="kafka_group_authorization_failed"
            )

        assert eventually(refusals, timeout=120, interval=0.5, message="no refusal counted") >= 1
    finally:
        stop_process(proc, grace=30.0)
    text = log.read_text()
    assert "WARNING" in text
    assert "Group authorization failed" in text or "GROUP_AUTHORIZATION_FAILED" in text, text[-2000:]


def test_a_password_rotated_mid_run_stops_the_service_with_one_line_naming_the_setting(
    secure_kafka: SecureKafkaCluster, principals_file: Path, redis_settings: RedisSettings, tmp_path: Path
) -> None:
    """The prices consumer runs as a user of its own; its password is changed in Kafka (the Admin
    API, as an operator rotating it) while the service still has the old one in its file. At its
    next login (SCRAM sessions last 15 s here) the broker refuses it: one ERROR line naming
    KAFKA_SASL_PASSWORD_FILE, counted, and the service exits 1, no retry loop, no traceback."""
    user = f"rotated-{uuid.uuid4().hex[:6]}"
    password_file = secure_kafka.add_principal(user, like="prices-consumer", directory=tmp_path)
    port = free_port()
    stats = tmp_path / "stats.json"
    env = _env(
        principals_file,
        redis_settings,
        KAFKA_SASL_USERNAME=user,
        KAFKA_SASL_PASSWORD_FILE=str(password_file),
        PRICES_CONSUMER_METRICS_PORT=str(port),
        CRYPTOPIPE_STATS_JSON=str(stats),
    )
    log = tmp_path / "prices-consumer.log"
    proc = _start_prices_consumer(env, log)
    try:

        def assigned() -> float:
            owned = _scrape_while_running(proc, log, port).total(m.CONSUMER_ASSIGNED)
            assert owned >= 1, "no partition yet"
            return owned

        eventually(assigned, timeout=120, interval=0.5, message="the consumer never joined its group")
        new = new_password()
        secure_kafka.set_password(user, new)
        code = proc.wait(timeout=90)
    finally:
        stop_process(proc, grace=30.0)
    text = log.read_text()
    assert code == 1, text[-3000:]
    assert "Traceback" not in text
    errors = [line for line in text.splitlines() if "ERROR" in line]
    assert len(errors) == 1, text[-3000:]
    expected = (
        f"prices-consumer failed: KAFKA_SASL_PASSWORD_FILE: Kafka at {secure_kafka.bootstrap_servers} "
        f"refused user '{user}'"
    )
    assert expected in errors[0], errors[0]
    assert errors[0].endswith("with SCRAM-SHA-512: wrong user name or password"), errors[0]
    for secret in (new, password_file.read_text().strip()):
        assert secret not in text
    final = final_scrape(read_stats(stats))
    assert final is not None
    assert final.total(m.ERRORS, component="prices-consumer", reason="kafka_authentication") >= 1


def _start_prices_consumer(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``cryptopipe prices-consumer`` with ``env``, its output in ``log``."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "cryptopipe.cli", "prices-consumer"], env=env, stdout=out, stderr=out
        )


def _scrape_while_running(proc: subprocess.Popen[bytes], log: Path, port: int) -> Scrape:
    """The service's /metrics; an AssertionError (for ``eventually``) while it is not up yet, and
    its log when it has exited."""
    assert proc.poll() is None, log.read_text()
    try:
        return Scrape.from_urls(f"http://127.0.0.1:{port}/metrics", timeout=2.0)
    except OSError as exc:
        raise AssertionError(f"no /metrics yet: {exc}") from None


def _secrets(secure_kafka: SecureKafkaCluster, redis_settings: RedisSettings) -> dict[str, str]:
    assert secure_kafka.security is not None
    found = {name: path.read_text().strip() for name, (_, path) in secure_kafka.principals.items()}
    found["kafka admin"] = secure_kafka.security.admin_password
    redis_password = urlsplit(redis_settings.url.get_secret_value()).password
    if redis_password:
        found["redis"] = redis_password
    assert all(len(secret) >= 16 for secret in found.values())
    return found


def _children(pid: int) -> list[psutil.Process]:
    try:
        children: list[psutil.Process] = psutil.Process(pid).children(recursive=True)
        return children
    except psutil.NoSuchProcess:
        return []


def _running(pid: int, command: str) -> bool:
    """Whether a child of ``pid`` runs ``python -m cryptopipe.cli <command>``."""
    for process in _children(pid):
        try:
            argv = process.cmdline()
        except psutil.Error:
            continue
        if "cryptopipe.cli" in argv and command in argv:
            return True
    return False


def _metrics_pages(processes: list[psutil.Process]) -> dict[int, str]:
    """Every /metrics page the run's processes serve on loopback, by port."""
    pages = {}
    for process in processes:
        try:
            ports = {c.laddr.port for c in process.net_connections("tcp") if c.status == psutil.CONN_LISTEN}
        except psutil.Error:
            continue
        for port in ports:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as response:
                    pages[port] = response.read().decode("utf-8", "replace")
            except (OSError, ValueError, http.client.HTTPException):
                continue  # not an HTTP server (Spark's, the exchange's WebSocket, ...)
    return pages


def _scan_running(up_pid: int, secrets: dict[str, str]) -> tuple[int, int]:
    """While the run is up: no secret in any process's argv or environment, none on any /metrics
    page; returns how many processes and pages were looked at."""
    processes = _children(up_pid)
    for process in [psutil.Process(up_pid), *processes]:
        try:
            argv = " ".join(process.cmdline())
        except psutil.Error:
            continue
        leaked = [name for name, secret in secrets.items() if secret in argv]
        assert not leaked, f"{leaked} in the argv of pid {process.pid}: {process.name()}"
        try:
            environment = " ".join(f"{k}={v}" for k, v in process.environ().items())
        except psutil.Error:
            continue
        leaked = [name for name, secret in secrets.items() if secret in environment]
        assert not leaked, f"{leaked} in the environment of pid {process.pid}: {process.name()}"
    pages = _metrics_pages(processes)
    for port, page in pages.items():
        leaked = [name for name, secret in secrets.items() if secret in page]
        assert not leaked, f"{leaked} on /metrics at port {port}"
    return len(processes), len(pages)


@pytest.fixture
def redis_users_file(redis_settings: RedisSettings, redis_client: Any, tmp_path: Path) -> Iterator[Path]:
    """Each Redis service's own ACL user on the session's Redis (this test's names), in the file
    REDIS_USERS_FILE reads; deleted afterwards."""
    namespace = f"t{uuid.uuid4().hex[:6]}-"
    secrets_dir = tmp_path / "redis-secrets"
    create_service_users(redis_settings, secrets_dir, namespace=namespace)
    users = {
        service: {
            "username": username(service, namespace),
            "password_file": str(secrets_dir / f"{username(service, namespace)}.password"),
        }
        for service in SERVICES
    }
    path = tmp_path / "redis-users.json"
    path.write_text(json.dumps({"users": users}))
    yield path
    redis_client.acl_deluser(*(u["username"] for u in users.values()))


def _redis_users_of(up_pid: int, redis_port: int, client: Any) -> dict[str, set[str]]:
    """The Redis user of every connection each of the run's services holds, by its command."""
    by_address: dict[str, str] = {}
    for process in _children(up_pid):
        try:
            argv = process.cmdline()
            connections = process.net_connections("tcp")
        except psutil.Error:
            continue
        if "cryptopipe.cli" not in argv:
            continue
        command = argv[argv.index("cryptopipe.cli") + 1]
        for connection in connections:
            if connection.raddr and connection.raddr.port == redis_port:
                by_address[f"{connection.laddr.ip}:{connection.laddr.port}"] = command
    found: dict[str, set[str]] = {}
    for entry in client.client_list():
        command = by_address.get(entry["addr"])
        if command is not None:
            found.setdefault(command, set()).add(entry["user"])
    return found


@pytest.mark.timeout(900)  # a loaded 2-core machine starts Spark slowly; no time is asserted
def test_the_whole_pipeline_runs_on_the_secured_cluster_and_no_secret_leaks(
    secure_kafka: SecureKafkaCluster,
    principals_file: Path,
    redis_settings: RedisSettings,
    redis_client: Any,  # deletes this test's keys afterwards
    redis_users_file: Path,
    tmp_path: Path,
) -> None:
    """The Spark job (and its express lane) too, as principal ``alerting``: a rule every price
    move meets makes alerts flow Spark -> Kafka -> the alerts consumer -> Redis."""
    secrets = _secrets(secure_kafka, redis_settings)
    users = json.loads(redis_users_file.read_text())["users"]
    for service, user in users.items():
        secrets[f"redis {service}"] = Path(user["password_file"]).read_text().strip()
    topic_prefix = f"t{uuid.uuid4().hex[:6]}-"
    secure_kafka.add_topic_prefix(topic_prefix)
    admin_url = redis_settings.url.get_secret_value()
    admin_password = write_private(tmp_path / "redis-admin.password", urlsplit(admin_url).password or "")
    summary_path = tmp_path / "summary.json"
    args = [
        "--source", "replay", "--symbols", "btcusdt,ethusdt", "--rate", "200", "--seed", "7",
        "--depth", "100ms", "--run-for", "15", "--rule", "1m:0.001%:early",
        "--summary-json", str(summary_path), *_QUIET,
    ]  # fmt: skip
    env = _env(
        principals_file,
        redis_settings,
        KAFKA_TOPIC_PREFIX=topic_prefix,
        REDIS_URL=url_for_user(admin_url, "default", None),  # up's own: its password in a file too
        REDIS_PASSWORD_FILE=str(admin_password),
        REDIS_USERS_FILE=str(redis_users_file),
    )
    redis_port = urlsplit(admin_url).port
    assert redis_port is not None
    with running_up(*args, env=env) as up:
        # Ingest starts last: once it runs, every service does.
        def started() -> bool:
            assert up.proc.poll() is None, "up exited"
            return _running(up.proc.pid, "ingest")

        try:
            eventually(started, timeout=600, interval=0.5)
        except AssertionError:
            pytest.fail(f"ingest never started; up said:\n{up.output[-4000:]}")
        processes, pages = _scan_running(up.proc.pid, secrets)
        assert processes >= 6  # exchange, ingest, prices, books and alerts consumers, Spark
        assert pages >= 4
        ours = {service: user["username"] for service, user in users.items()}
        connected = _redis_users_of(up.proc.pid, redis_port, redis_client)
        for service in ("prices-consumer", "books-consumer", "alerts-consumer"):
            assert connected.get(service) == {ours[service]}, connected
        assert not set(connected) - {"prices-consumer", "books-consumer", "alerts-consumer"}, connected
        code = up.proc.wait(timeout=300)
    output = up.output
    assert code == 0, output[-4000:]
    assert "Traceback" not in output
    summary = json.loads(summary_path.read_text())
    books = summary["reconciliation"]
    assert books["balanced"] is True, books
    assert books["prices"]["published"] > 0
    assert books["book-updates"]["published"] > 0
    assert books["alerts"]["written"] >= 1  # Spark (or its lane) published, the consumer wrote
    assert summary["alerting_unread"] == 0  # Spark read every trade before it was stopped
    # Spark's own Kafka connector (java_client_config: the JAAS line, the PEM truststore) and the
    # express lane (client_config), both as principal alerting.
    assert (summary["alerting_source"], summary["alerting_express"]) == ("native", True)
    assert summary["alerts_raised"] >= 1  # read back as the dashboard's user
    log_text = full_log(output)
    assert "[ingest]" in log_text  # the services' own lines are in it
    assert "[alerting]" in log_text
    for where, text in (("output", output), ("log", log_text), ("summary", summary_path.read_text())):
        leaked = [name for name, secret in secrets.items() if secret in text]
        assert not leaked, f"{leaked} in the run's {where}"
