"""`cryptopipe up` on a secured Apache Kafka (SASL_SSL, SCRAM-SHA-512, ACLs), pointed at it only by
KAFKA_PRINCIPALS_FILE: each service logs in as its own principal, the books balance, and no secret
of the run shows up in any process's argv, any log, the summary or any /metrics page.

A wrong password or a plaintext client is refused before anything starts, with one line naming
the setting; a service used beyond its ACLs is refused, counted and logged. Redis is the
session's (its default user and password: the per-service Redis users are not wired into `up`
yet), and its password is scanned for too. The run leaves the Spark job out (`--no-alerting`, as
the books test does): its principal's clients are covered by the ACL tests in
packages/infra/tests/test_kafka_secure.py.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil
import pytest

from cryptopipe.infra.secure_kafka import SecureKafkaCluster
from cryptopipe.infra.testing import eventually
from cryptopipe.observability import Scrape
from cryptopipe.observability import metrics as m
from cryptopipe.runtime import free_port, stop_process
from cryptopipe.schemas import RedisSettings

from .conftest import clean_env, full_log, running_up

pytestmark = pytest.mark.slow

_QUIET = ["--no-dashboard", "--no-prometheus"]


@pytest.fixture(scope="module")
def principals_file(secure_kafka: SecureKafkaCluster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("secure") / "cluster.json"
    path.write_text(json.dumps(secure_kafka.describe()))
    return path


def _env(principals_file: Path, redis_settings: RedisSettings, **extra: str) -> dict[str, str]:
    return clean_env(
        KAFKA_PRINCIPALS_FILE=str(principals_file),
        REDIS_URL=redis_settings.url.get_secret_value(),
        REDIS_KEY_PREFIX=redis_settings.key_prefix,
        **extra,
    )


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


def test_a_service_beyond_its_acls_is_refused_counted_and_reported(
    principals_file: Path, redis_settings: RedisSettings, tmp_path: Path
) -> None:
    """The prices consumer run with ingest's principal, which may join no group."""
    port = free_port()
    env = _env(
        principals_file, redis_settings, KAFKA_PRINCIPAL="ingest", PRICES_CONSUMER_METRICS_PORT=str(port)
    )
    log = tmp_path / "prices-consumer.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cryptopipe.cli", "prices-consumer"], env=env, stdout=out, stderr=out
        )
    try:

        def refusals() -> float:
            assert proc.poll() is None, log.read_text()
            try:
                scrape = Scrape.from_urls(f"http://127.0.0.1:{port}/metrics", timeout=2.0)
            except OSError as exc:
                raise AssertionError(f"no /metrics yet: {exc}") from None
            return scrape.total(
                m.ERRORS, component="prices-consumer", reason="kafka_group_authorization_failed"
            )

        assert eventually(refusals, timeout=120, interval=0.5, message="no refusal counted") >= 1
    finally:
        stop_process(proc, grace=30.0)
    text = log.read_text()
    assert "WARNING" in text
    assert "Group authorization failed" in text or "GROUP_AUTHORIZATION_FAILED" in text, text[-2000:]


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
        return psutil.Process(pid).children(recursive=True)
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
    """While the run is up: no secret in any process's argv, none on any /metrics page; returns
    how many processes and pages were looked at."""
    processes = _children(up_pid)
    for process in [psutil.Process(up_pid), *processes]:
        try:
            argv = " ".join(process.cmdline())
        except psutil.Error:
            continue
        leaked = [name for name, secret in secrets.items() if secret in argv]
        assert not leaked, f"{leaked} in the argv of pid {process.pid}: {process.name()}"
    pages = _metrics_pages(processes)
    for port, page in pages.items():
        leaked = [name for name, secret in secrets.items() if secret in page]
        assert not leaked, f"{leaked} on /metrics at port {port}"
    return len(processes), len(pages)


@pytest.mark.timeout(900)  # a loaded 2-core machine starts Spark slowly; no time is asserted
def test_the_whole_pipeline_runs_on_the_secured_cluster_and_no_secret_leaks(
    secure_kafka: SecureKafkaCluster,
    principals_file: Path,
    redis_settings: RedisSettings,
    redis_client: Any,  # deletes this test's keys afterwards
    tmp_path: Path,
) -> None:
    secrets = _secrets(secure_kafka, redis_settings)
    summary_path = tmp_path / "summary.json"
    args = [
        "--source", "replay", "--symbols", "btcusdt,ethusdt", "--rate", "200", "--seed", "7",
        "--depth", "100ms", "--run-for", "20", "--summary-json", str(summary_path), "--no-alerting", *_QUIET,
    ]  # fmt: skip
    with running_up(*args, env=_env(principals_file, redis_settings)) as up:
        # Ingest starts last: once it runs, every service does.
        try:
            eventually(lambda: _running(up.proc.pid, "ingest"), timeout=300, interval=0.5)
        except AssertionError:
            pytest.fail(f"ingest never started; up said:\n{up.output[-4000:]}")
        processes, pages = _scan_running(up.proc.pid, secrets)
        assert processes >= 4  # exchange, ingest, prices and books consumers
        assert pages >= 3
        code = up.proc.wait(timeout=180)
    output = up.output
    assert code == 0, output[-4000:]
    assert "Traceback" not in output
    summary = json.loads(summary_path.read_text())
    books = summary["reconciliation"]
    assert books["balanced"] is True, books
    assert books["prices"]["published"] > 0
    assert books["book-updates"]["published"] > 0
    log_text = full_log(output)
    assert "[ingest]" in log_text  # the services' own lines are in it
    for where, text in (("output", output), ("log", log_text), ("summary", summary_path.read_text())):
        leaked = [name for name, secret in secrets.items() if secret in text]
        assert not leaked, f"{leaked} in the run's {where}"
