"""The Kafka section of the settings: security combinations checked at start-up with the variable
named, secrets kept out of reprs and errors, password files, and a secured cluster's principals file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cryptopipe.schemas import ConfigError, KafkaSettings, load_settings

SECRET = 'pa55-w0rd-"quoted"'


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in KafkaSettings.model_fields:
        monkeypatch.delenv(f"KAFKA_{name.upper()}", raising=False)
    monkeypatch.chdir(tmp_path)  # no .env file here


def _file(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, "utf-8")
    return str(path)


def _problems(**values: object) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as caught:
        load_settings(KafkaSettings, **values)
    assert SECRET not in str(caught.value)
    return caught.value.problems


def test_plaintext_is_the_default_and_its_config_has_no_security_keys() -> None:
    config = load_settings(KafkaSettings, bootstrap_servers="b:9092").client_config()
    assert config == {"bootstrap.servers": "b:9092", "security.protocol": "PLAINTEXT"}


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (
            {"security_protocol": "SASL_SSL"},
            "KAFKA_SASL_MECHANISM: required with KAFKA_SECURITY_PROTOCOL=SASL_SSL",
        ),
        ({"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN"}, "KAFKA_SASL_USERNAME: required"),
        (
            {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN", "sasl_username": "u"},
            "KAFKA_SASL_PASSWORD: required with KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT",
        ),
        (
            {"sasl_mechanism": "SCRAM-SHA-512"},
            "KAFKA_SASL_MECHANISM: set, but KAFKA_SECURITY_PROTOCOL=PLAINTEXT",
        ),
        ({"sasl_username": "u"}, "KAFKA_SASL_USERNAME: set, but KAFKA_SECURITY_PROTOCOL=PLAINTEXT"),
        (
            {"security_protocol": "SSL", "ssl_ca_location": "/nowhere/ca.pem"},
            "KAFKA_SSL_CA_LOCATION: no such file",
        ),
        (
            {"security_protocol": "SSL", "ssl_key_password": SECRET},
            "KAFKA_SSL_KEY_PASSWORD: set, but there is no",
        ),
        (
            {"security_protocol": "SASL_SSL", "sasl_mechanism": "GSSAPI"},
            "KAFKA_SASL_MECHANISM: Input should be",
        ),
        ({"security_protocol": "TLS"}, "KAFKA_SECURITY_PROTOCOL: Input should be"),
    ],
)
def test_an_unusable_combination_is_refused_naming_the_variable(
    values: dict[str, str], expected: str
) -> None:
    assert any(problem.startswith(expected) for problem in _problems(**values)), _problems(**values)


def test_tls_files_with_a_protocol_without_tls_are_refused(tmp_path: Path) -> None:
    ca = _file(tmp_path, "ca.pem", "x")
    problems = _problems(ssl_ca_location=ca)
    expected = "KAFKA_SSL_CA_LOCATION: set, but KAFKA_SECURITY_PROTOCOL=PLAINTEXT does not use TLS"
    assert problems == (expected + " (SSL or SASL_SSL do)",)


def test_a_certificate_needs_its_key(tmp_path: Path) -> None:
    cert = _file(tmp_path, "client.pem", "x")
    problems = _problems(security_protocol="SSL", ssl_certificate_location=cert)
    assert any(
        problem.startswith("KAFKA_SSL_KEY_LOCATION: a client certificate needs its key")
        for problem in problems
    )


def test_password_and_password_file_together_are_refused(tmp_path: Path) -> None:
    password_file = _file(tmp_path, "pw", SECRET + "\n")
    problems = _problems(
        security_protocol="SASL_SSL",
        sasl_mechanism="PLAIN",
        sasl_username="u",
        sasl_password=SECRET,
        sasl_password_file=password_file,
    )
    assert problems == ("KAFKA_SASL_PASSWORD_FILE: set together with KAFKA_SASL_PASSWORD; set one",)


def test_sasl_ssl_with_mtls_gives_librdkafka_and_java_every_setting(tmp_path: Path) -> None:
    ca = _file(tmp_path, "ca.pem", "x")
    both = _file(tmp_path, "client.pem", "cert and key")
    settings = load_settings(
        KafkaSettings,
        bootstrap_servers="b:9093",
        security_protocol="sasl_ssl",
        sasl_mechanism="scram-sha-512",
        sasl_username="ingest",
        sasl_password=SECRET,
        ssl_ca_location=ca,
        ssl_certificate_location=both,
        ssl_key_location=both,
        ssl_key_password="key-secret",
    )
    assert settings.client_config() == {
        "bootstrap.servers": "b:9093",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "ingest",
        "sasl.password": SECRET,
        "ssl.ca.location": ca,
        "ssl.certificate.location": both,
        "ssl.key.location": both,
        "ssl.key.password": "key-secret",
    }
    java = settings.java_client_config()
    assert java["sasl.jaas.config"] == (
        'org.apache.kafka.common.security.scram.ScramLoginModule required username="ingest" '
        'password="pa55-w0rd-\\"quoted\\"";'
    )
    assert (java["ssl.truststore.type"], java["ssl.truststore.location"]) == ("PEM", ca)
    assert (java["ssl.keystore.type"], java["ssl.keystore.location"], java["ssl.key.password"]) == (
        "PEM",
        both,
        "key-secret",
    )
    for shown in (repr(settings), str(settings), settings.redacted()):
        assert SECRET not in shown
        assert "key-secret" not in shown
    assert settings.redacted() == "SASL_SSL SCRAM-SHA-512 as ingest at b:9093"


def test_java_client_needs_certificate_and_key_in_one_file(tmp_path: Path) -> None:
    settings = load_settings(
        KafkaSettings,
        security_protocol="SSL",
        ssl_certificate_location=_file(tmp_path, "c.pem", "c"),
        ssl_key_location=_file(tmp_path, "k.pem", "k"),
    )
    assert "ssl.key.location" in settings.client_config()
    with pytest.raises(ConfigError, match=r"^KAFKA_SSL_KEY_LOCATION: Kafka's Java client"):
        settings.java_client_config()


def test_the_password_file_is_read_when_a_client_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    password_file = tmp_path / "pw"
    password_file.write_text(SECRET + "\n", "utf-8")
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "PLAIN")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "u")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD_FILE", str(password_file))
    settings = load_settings(KafkaSettings)
    assert SECRET not in repr(settings)
    assert settings.client_config()["sasl.password"] == SECRET
    password_file.write_text("rotated\n", "utf-8")
    assert settings.client_config()["sasl.password"] == "rotated"
    password_file.unlink()
    with pytest.raises(ConfigError, match=f"^KAFKA_SASL_PASSWORD_FILE: cannot read {password_file}"):
        settings.client_config()
    with pytest.raises(ConfigError, match="KAFKA_SASL_PASSWORD_FILE: no such file"):
        load_settings(KafkaSettings)


def _principals_file(tmp_path: Path) -> Path:
    path = tmp_path / "cluster.json"
    path.write_text(
        json.dumps(
            {
                "bootstrap_servers": "127.0.0.1:1234",
                "security_protocol": "SASL_SSL",
                "sasl_mechanism": "SCRAM-SHA-512",
                "ca_file": _file(tmp_path, "ca.pem", "x"),
                "principals": {
                    name: {
                        "username": f"cp-{name}",
                        "password_file": _file(tmp_path, f"{name}.pw", f"{name}-{SECRET}"),
                    }
                    for name in ("pipeline", "ingest")
                },
            }
        ),
        "utf-8",
    )
    return path


def test_a_principals_file_gives_the_connection_and_each_process_its_principal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAFKA_PRINCIPALS_FILE", str(_principals_file(tmp_path)))
    orchestrator = load_settings(KafkaSettings)
    assert orchestrator.redacted() == "SASL_SSL SCRAM-SHA-512 as cp-pipeline at 127.0.0.1:1234"
    assert orchestrator.client_config()["sasl.password"] == f"pipeline-{SECRET}"
    assert orchestrator.ssl_ca_location == str(tmp_path / "ca.pem")
    monkeypatch.setenv("KAFKA_PRINCIPAL", "ingest")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "elsewhere:9093")  # a variable beats the file
    ingest = load_settings(KafkaSettings)
    assert (ingest.sasl_username, ingest.bootstrap_servers) == ("cp-ingest", "elsewhere:9093")
    assert ingest.client_config()["sasl.password"] == f"ingest-{SECRET}"
    monkeypatch.setenv("KAFKA_PRINCIPAL", "alerting")
    with pytest.raises(
        ConfigError, match=r"KAFKA_PRINCIPAL: 'alerting' is not in .* \(it has ingest, pipeline\)"
    ):
        load_settings(KafkaSettings)
    monkeypatch.setenv("KAFKA_PRINCIPALS_FILE", str(tmp_path / "missing.json"))
    with pytest.raises(ConfigError, match="KAFKA_PRINCIPALS_FILE: cannot read principals from"):
        load_settings(KafkaSettings)
