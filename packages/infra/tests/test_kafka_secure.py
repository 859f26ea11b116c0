"""``cryptopipe kafka-cluster --secure``: a secured Apache Kafka as users run it, reached only
through what its ``--json`` file says (KAFKA_PRINCIPALS_FILE), one principal per service.

One single-node cluster is started for the module (``--run-for`` is a safety net) and stopped
with SIGTERM. Each principal does its job; beyond its ACLs it is refused; a wrong password, a
client without TLS and a client that does not trust the run's CA cannot get in.
"""

from __future__ import annotations

import json
import logging
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from cryptopipe.infra.secure_kafka import GRANTS
from cryptopipe.infra.testing import eventually
from cryptopipe.runtime import stop_process
from cryptopipe.schemas import KafkaSettings, load_settings

COMMAND = [sys.executable, "-m", "cryptopipe.cli", "kafka-cluster", "--secure", "--brokers", "1"]
SAFETY_NET_S = 300
_QUIET = logging.getLogger("test.secure.librdkafka")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


class SecureCli:
    def __init__(self, workdir: Path) -> None:
        self.json_path = workdir / "secure.json"
        self.stdout, self.stderr = workdir / "stdout.txt", workdir / "stderr.txt"
        with open(self.stdout, "wb") as out, open(self.stderr, "wb") as err:
            self.proc = subprocess.Popen(
                [
                    *COMMAND,
                    "--heap",
                    "256m",
                    "--json",
                    str(self.json_path),
                    "--run-for",
                    str(SAFETY_NET_S),
                    "--ready-timeout",
                    "300",
                ],
                stdout=out,
                stderr=err,
            )
        self.info: dict[str, Any] = {}

    def wait_ready(self) -> None:
        def ready() -> dict[str, Any]:
            if self.proc.poll() is not None:
                pytest.fail(
                    f"kafka-cluster --secure exited with {self.proc.returncode}:\n{self.stderr.read_text()}"
                )
            assert self.stdout.read_text(), "not ready yet"
            return dict(json.loads(self.json_path.read_text()))

        self.info = eventually(ready, timeout=240, interval=0.2, message="the secured cluster was not ready")

    def settings(self, principal: str, **overrides: Any) -> KafkaSettings:
        """What a service configured with KAFKA_PRINCIPALS_FILE and KAFKA_PRINCIPAL reads."""
        return load_settings(
            KafkaSettings, principals_file=str(self.json_path), principal=principal, **overrides
        )

    def passwords(self) -> list[str]:
        return [Path(p["password_file"]).read_text().strip() for p in self.info["principals"].values()]


@pytest.fixture(scope="module")
def secure_cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureCli]:
    cli = SecureCli(tmp_path_factory.mktemp("secure-kafka"))
    try:
        cli.wait_ready()
        yield cli
    finally:
        stop_process(cli.proc, grace=60.0)


def _config(settings: KafkaSettings, **extra: Any) -> dict[str, Any]:
    return {**settings.client_config(), "logger": _QUIET, **extra}


def _produce(settings: KafkaSettings, topic: str) -> KafkaError | None:
    """Produce one record; the delivery error, or None once the broker acknowledged it."""
    outcome: list[KafkaError | None] = []
    producer = Producer(_config(settings, **{"enable.idempotence": True, "message.timeout.ms": 10000}))
    producer.produce(topic, b"v", b"k", on_delivery=lambda err, _msg: outcome.append(err))
    producer.flush(15)
    assert outcome, "no delivery report within 15 s"
    return outcome[0]


def _consume_error(settings: KafkaSettings, topic: str, group: str) -> KafkaError | None:
    """Subscribe in ``group``: the first error a poll returns, or None once a record arrives."""
    consumer = Consumer(_config(settings, **{"group.id": group, "auto.offset.reset": "earliest"}))
    consumer.subscribe([topic])
    try:

        def outcome() -> tuple[KafkaError | None]:
            message = consumer.poll(0.5)
            assert message is not None, "nothing yet"
            return (message.error(),)

        return eventually(outcome, timeout=30, message=f"no record and no error from {topic}")[0]
    finally:
        consumer.close()


@pytest.mark.slow
def test_the_command_prints_no_password_and_writes_the_principals_file(secure_cli: SecureCli) -> None:
    info = secure_cli.info
    assert (info["security_protocol"], info["sasl_mechanism"]) == ("SASL_SSL", "SCRAM-SHA-512")
    assert Path(info["ca_file"]).read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert set(info["principals"]) == set(GRANTS)
    for service, principal in info["principals"].items():
        assert principal["username"] == service
        assert stat.S_IMODE(Path(principal["password_file"]).stat().st_mode) == 0o600
    mtls = info["mtls"]  # the listener that knows a client by its certificate, and each one's
    assert mtls["security_protocol"] == "SSL"
    assert mtls["bootstrap_servers"] not in info["bootstrap_servers"]
    assert set(mtls["principals"]) == set(GRANTS)
    for files in mtls["principals"].values():
        assert files["certificate_file"] == files["key_file"]  # one PEM, as Kafka's Java client wants
        pem = Path(files["key_file"])
        assert stat.S_IMODE(pem.stat().st_mode) == 0o600
        assert "PRIVATE KEY" in pem.read_text()
    [line] = secure_cli.stdout.read_text().splitlines()
    assert f"KAFKA_PRINCIPALS_FILE={secure_cli.json_path} uv run cryptopipe up" in line
    shown = secure_cli.stdout.read_text() + secure_cli.stderr.read_text() + secure_cli.json_path.read_text()
    for password in secure_cli.passwords():
        assert len(password) >= 32
        assert password not in shown


@pytest.mark.slow
def test_each_service_does_its_job_with_its_own_principal(secure_cli: SecureCli) -> None:
    assert _produce(secure_cli.settings("ingest"), "prices") is None
    assert _produce(secure_cli.settings("alerting"), "alerts") is None
    assert _consume_error(secure_cli.settings("prices-consumer"), "prices", "cryptopipe-prices") is None


@pytest.mark.slow
def test_a_principal_beyond_its_acls_is_refused(secure_cli: SecureCli) -> None:
    prices_consumer, ingest = secure_cli.settings("prices-consumer"), secure_cli.settings("ingest")
    refused = _produce(prices_consumer, "alerts")
    assert refused is not None
    assert refused.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    error = _consume_error(ingest, "prices", f"ingest-{uuid.uuid4().hex[:6]}")
    assert error is not None
    assert error.code() == KafkaError.GROUP_AUTHORIZATION_FAILED
    error = _consume_error(prices_consumer, "prices", "cryptopipe-alerts")  # another service's group
    assert error is not None
    assert error.code() == KafkaError.GROUP_AUTHORIZATION_FAILED
    admin = AdminClient(_config(ingest))
    future = admin.create_topics([NewTopic(f"made-by-ingest-{uuid.uuid4().hex[:6]}", 1, 1)])
    with pytest.raises(KafkaException) as created:
        next(iter(future.values())).result(timeout=15)
    assert created.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


@pytest.mark.slow
def test_the_bench_principal_makes_and_uses_bench_topics_only(secure_cli: SecureCli) -> None:
    bench = secure_cli.settings("bench")
    topic = f"bench-{uuid.uuid4().hex[:8]}-prices"
    admin = AdminClient(_config(bench))
    next(iter(admin.create_topics([NewTopic(topic, 1, 1)]).values())).result(timeout=30)
    eventually(lambda: _produce(bench, topic) is None, timeout=30, message="bench could not produce")
    assert _consume_error(bench, topic, "cryptopipe-prices") is None
    refused = _produce(bench, "prices")  # the pipeline's own topics are not the bench's
    assert refused is not None
    assert refused.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def _errors_of(config: dict[str, Any]) -> list[KafkaError]:
    """Ask for metadata (it fails) and return what the client's ``error_cb`` was told."""
    errors: list[KafkaError] = []
    admin = AdminClient({**config, "logger": _QUIET, "error_cb": errors.append})
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=1.5)
    admin.poll(0.5)
    return errors


@pytest.mark.slow
def test_wrong_password_plaintext_and_untrusted_clients_cannot_connect(
    secure_cli: SecureCli, tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong.password"
    wrong.write_text("not-the-password\n")
    settings = secure_cli.settings("ingest", sasl_password_file=str(wrong))
    codes = {e.code() for e in _errors_of(settings.client_config())}
    assert KafkaError._AUTHENTICATION in codes
    plaintext = {"bootstrap.servers": secure_cli.info["bootstrap_servers"], "security.protocol": "PLAINTEXT"}
    _errors_of(plaintext)  # no metadata: the TLS listener never answers a plaintext request
    untrusted = {
        k: v for k, v in secure_cli.settings("ingest").client_config().items() if k != "ssl.ca.location"
    }
    assert KafkaError._SSL in {e.code() for e in _errors_of(untrusted)}
