"""The Kafka section of the settings, shared by every Kafka client of the project: where the
brokers are and how to reach them securely (TLS, SASL, mTLS), checked once at start-up.

:meth:`KafkaSettings.client_config` is the one place librdkafka clients get their connection and
security settings from, and :meth:`KafkaSettings.java_client_config` the same for Kafka's Java
client (Spark's connector). A combination that cannot work (SASL_SSL without a mechanism, a
certificate without its key, a CA file that is not there) raises :class:`ConfigError` naming the
variable.
"""

from __future__ import annotations

import json
import os
from typing import Any, Literal

from pydantic import SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings

from cryptopipe.schemas.config import SETTINGS_CONFIG, ConfigError, read_secret_file, setting

#: SASL mechanisms the clients are set up for: a user name and password, sent as is (PLAIN, only
#: ever over TLS in production) or proven without sending it (SCRAM).
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")

#: The principal of ``KAFKA_PRINCIPALS_FILE`` a process uses when KAFKA_PRINCIPAL is not set:
#: the orchestrator's own (``cryptopipe up`` sets each service's).
DEFAULT_PRINCIPAL = "pipeline"

#: What a principals file (``cryptopipe kafka-cluster --secure --json``) fills in, when not set.
_FROM_PRINCIPALS_FILE = {
    "KAFKA_BOOTSTRAP_SERVERS": "bootstrap_servers",
    "KAFKA_SECURITY_PROTOCOL": "security_protocol",
    "KAFKA_SASL_MECHANISM": "sasl_mechanism",
    "KAFKA_SSL_CA_LOCATION": "ca_file",
}


def _principals_file_values(data: dict[str, Any]) -> None:
    """Fill ``data`` (a :class:`KafkaSettings` input, by variable) from its KAFKA_PRINCIPALS_FILE.

    The file gives the connection (bootstrap servers, protocol, mechanism, CA) wherever no
    variable does, and KAFKA_PRINCIPAL's user name unless KAFKA_SASL_USERNAME is set, with its
    password file unless a password (or password file) is set.
    """
    path = str(data.get("KAFKA_PRINCIPALS_FILE") or "")
    if not path:
        return
    try:
        with open(path, encoding="utf-8") as handle:
            described = json.load(handle)
        principals = described["principals"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"KAFKA_PRINCIPALS_FILE: cannot read principals from {path} ({exc})") from None
    for variable, key in _FROM_PRINCIPALS_FILE.items():
        if not data.get(variable) and described.get(key):
            data[variable] = described[key]
    if data.get("KAFKA_SASL_USERNAME"):
        return
    principal = str(data.get("KAFKA_PRINCIPAL") or DEFAULT_PRINCIPAL)
    entry = principals.get(principal) if isinstance(principals, dict) else None
    if not isinstance(entry, dict):
        raise ValueError(
            f"KAFKA_PRINCIPAL: {principal!r} is not in {path} (it has {', '.join(sorted(principals))})"
        )
    data["KAFKA_SASL_USERNAME"] = entry.get("username", "")
    if not data.get("KAFKA_SASL_PASSWORD") and not data.get("KAFKA_SASL_PASSWORD_FILE"):
        data["KAFKA_SASL_PASSWORD_FILE"] = entry.get("password_file", "")


class KafkaSettings(BaseSettings):
    """Where the Kafka-protocol broker is, and how to authenticate to it: the one section every
    Kafka client of the project is configured from (:meth:`client_config`).

    An empty ``bootstrap_servers`` means "find or start one" (embedded mode). Secrets can stay out
    of the environment: KAFKA_SASL_PASSWORD_FILE names a file holding the password, and
    KAFKA_PRINCIPALS_FILE a whole secured cluster's description (what ``cryptopipe kafka-cluster
    --secure --json`` writes), of which each process uses principal KAFKA_PRINCIPAL.
    """

    model_config = SETTINGS_CONFIG

    bootstrap_servers: str = setting("KAFKA_BOOTSTRAP_SERVERS", "")
    """Kafka bootstrap servers (host:port,...). Empty: find or start a local broker."""
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = setting(
        "KAFKA_SECURITY_PROTOCOL", "PLAINTEXT"
    )
    """PLAINTEXT, SSL (TLS), SASL_PLAINTEXT or SASL_SSL (user and password over TLS: what a shared
    or managed cluster wants)."""
    sasl_mechanism: Literal["", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = setting(
        "KAFKA_SASL_MECHANISM", ""
    )
    """PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; required with SASL_SSL and SASL_PLAINTEXT, and only
    with them."""
    sasl_username: str = setting("KAFKA_SASL_USERNAME", "")
    """SASL user name; required with SASL_SSL and SASL_PLAINTEXT."""
    sasl_password: SecretStr = setting("KAFKA_SASL_PASSWORD", SecretStr(""))
    """SASL password (secret). Or KAFKA_SASL_PASSWORD_FILE; not both."""
    sasl_password_file: str = setting("KAFKA_SASL_PASSWORD_FILE", "")
    """A file whose first line is the SASL password, read when a client is made: the secret stays
    out of the environment."""
    ssl_ca_location: str = setting("KAFKA_SSL_CA_LOCATION", "")
    """CA certificates (PEM) to verify the brokers with; empty: the system's. SSL and SASL_SSL only."""
    ssl_certificate_location: str = setting("KAFKA_SSL_CERTIFICATE_LOCATION", "")
    """The client's certificate (PEM), for brokers that authenticate clients by TLS (mTLS);
    with KAFKA_SSL_KEY_LOCATION."""
    ssl_key_location: str = setting("KAFKA_SSL_KEY_LOCATION", "")
    """The client certificate's private key (PEM); with KAFKA_SSL_CERTIFICATE_LOCATION."""
    ssl_key_password: SecretStr = setting("KAFKA_SSL_KEY_PASSWORD", SecretStr(""))
    """Password of an encrypted KAFKA_SSL_KEY_LOCATION (secret)."""
    principals_file: str = setting("KAFKA_PRINCIPALS_FILE", "")
    """A secured cluster's description (`cryptopipe kafka-cluster --secure --json PATH`): it gives
    the bootstrap servers, protocol, mechanism and CA that no variable sets, and the user name and
    password file of KAFKA_PRINCIPAL. `up` gives each service its own principal."""
    principal: str = setting("KAFKA_PRINCIPAL", "")
    """Which principal of KAFKA_PRINCIPALS_FILE this process is (ingest, prices-consumer,
    books-consumer, alerts-consumer, alerting, pipeline, bench); empty: pipeline."""
    topic_prefix: str = setting("KAFKA_TOPIC_PREFIX", "")
    """Prefix for every topic name."""

    @model_validator(mode="before")
    @classmethod
    def _from_principals_file(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("KAFKA_PRINCIPALS_FILE"):
            data = dict(data)
            _principals_file_values(data)
        return data

    @field_validator("sasl_mechanism", "security_protocol", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _consistent(self) -> KafkaSettings:
        problems = _security_problems(self)
        if problems:
            raise ValueError("\n  ".join(problems))
        return self

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol.endswith("SSL")

    def password(self) -> str:
        """The SASL password: KAFKA_SASL_PASSWORD, or the first line of KAFKA_SASL_PASSWORD_FILE
        (read now); raises :class:`ConfigError` when the file cannot be read."""
        if self.sasl_password_file:
            return read_secret_file(self.sasl_password_file, "KAFKA_SASL_PASSWORD_FILE")
        return self.sasl_password.get_secret_value()

    def client_config(self) -> dict[str, str]:
        """librdkafka settings common to producers, consumers and admin clients.

        Holds the password in clear: give it to a client, never to a log.
        """
        config = {"bootstrap.servers": self.bootstrap_servers, "security.protocol": self.security_protocol}
        if self.uses_sasl:
            config["sasl.mechanism"] = self.sasl_mechanism
            config["sasl.username"] = self.sasl_username
            config["sasl.password"] = self.password()
        if self.ssl_ca_location:
            config["ssl.ca.location"] = self.ssl_ca_location
        if self.ssl_certificate_location:
            config["ssl.certificate.location"] = self.ssl_certificate_location
            config["ssl.key.location"] = self.ssl_key_location
            if self.ssl_key_password.get_secret_value():
                config["ssl.key.password"] = self.ssl_key_password.get_secret_value()
        return config

    def java_client_config(self) -> dict[str, str]:
        """The same settings for Kafka's Java client (Spark's Kafka connector takes them with a
        ``kafka.`` prefix): SASL as a JAAS line, certificates as PEM stores.

        The Java client reads a client certificate and its key from one PEM file: with mTLS,
        KAFKA_SSL_CERTIFICATE_LOCATION and KAFKA_SSL_KEY_LOCATION must name the same file
        (:class:`ConfigError` otherwise). Holds the password in clear.
        """
        config = {"bootstrap.servers": self.bootstrap_servers, "security.protocol": self.security_protocol}
        if self.uses_sasl:
            module = (
                "org.apache.kafka.common.security.scram.ScramLoginModule"
                if self.sasl_mechanism.startswith("SCRAM")
                else "org.apache.kafka.common.security.plain.PlainLoginModule"
            )
            username = self.sasl_username.replace("\\", "\\\\").replace('"', '\\"')
            password = self.password().replace("\\", "\\\\").replace('"', '\\"')
            config["sasl.mechanism"] = self.sasl_mechanism
            config["sasl.jaas.config"] = f'{module} required username="{username}" password="{password}";'
        if self.ssl_ca_location:
            config["ssl.truststore.type"] = "PEM"
            config["ssl.truststore.location"] = self.ssl_ca_location
        if self.ssl_certificate_location:
            if self.ssl_key_location != self.ssl_certificate_location:
                raise ConfigError(
                    "KAFKA_SSL_KEY_LOCATION: Kafka's Java client (Spark's connector) needs the client "
                    "certificate and its key in one PEM file; name that file in both "
                    "KAFKA_SSL_CERTIFICATE_LOCATION and KAFKA_SSL_KEY_LOCATION"
                )
            config["ssl.keystore.type"] = "PEM"
            config["ssl.keystore.location"] = self.ssl_certificate_location
            if self.ssl_key_password.get_secret_value():
                config["ssl.key.password"] = self.ssl_key_password.get_secret_value()
        return config

    def login_refused(self) -> str:
        """The one line for a broker that refused this client's SASL credentials (a wrong or
        rotated password): the setting to fix and the user, never the password."""
        variable = "KAFKA_SASL_PASSWORD_FILE" if self.sasl_password_file else "KAFKA_SASL_PASSWORD"
        name = self.principal or DEFAULT_PRINCIPAL
        principal = (
            f" (principal {name} of KAFKA_PRINCIPALS_FILE)"
            if self.principals_file and self.sasl_username == name
            else ""
        )
        return (
            f"{variable}: Kafka at {self.bootstrap_servers} refused user {self.sasl_username!r}"
            f"{principal} with {self.sasl_mechanism}: wrong user name or password"
        )

    def redacted(self) -> str:
        """Where and as whom, safe to log: ``SASL_SSL SCRAM-SHA-512 as ingest at host:port``."""
        who = f" {self.sasl_mechanism} as {self.sasl_username}" if self.uses_sasl else ""
        return f"{self.security_protocol}{who} at {self.bootstrap_servers or '(a local broker)'}"


def _security_problems(kafka: KafkaSettings) -> list[str]:
    """What makes ``kafka``'s security settings unusable, one ``VARIABLE: why`` each."""
    protocol = f"KAFKA_SECURITY_PROTOCOL={kafka.security_protocol}"
    problems = []
    if kafka.uses_sasl:
        if not kafka.sasl_mechanism:
            problems.append(
                f"KAFKA_SASL_MECHANISM: required with {protocol} (one of {', '.join(SASL_MECHANISMS)})"
            )
        if not kafka.sasl_username:
            problems.append(f"KAFKA_SASL_USERNAME: required with {protocol}")
        has_password = bool(kafka.sasl_password.get_secret_value())
        if has_password and kafka.sasl_password_file:
            problems.append("KAFKA_SASL_PASSWORD_FILE: set together with KAFKA_SASL_PASSWORD; set one")
        elif not has_password and not kafka.sasl_password_file:
            problems.append(f"KAFKA_SASL_PASSWORD: required with {protocol} (or KAFKA_SASL_PASSWORD_FILE)")
    else:
        for variable, value in (
            ("KAFKA_SASL_MECHANISM", kafka.sasl_mechanism),
            ("KAFKA_SASL_USERNAME", kafka.sasl_username),
            ("KAFKA_SASL_PASSWORD", kafka.sasl_password.get_secret_value()),
            ("KAFKA_SASL_PASSWORD_FILE", kafka.sasl_password_file),
        ):
            if value:
                problems.append(f"{variable}: set, but {protocol} does not use SASL (SASL_SSL does)")
    files = (
        ("KAFKA_SSL_CA_LOCATION", kafka.ssl_ca_location),
        ("KAFKA_SSL_CERTIFICATE_LOCATION", kafka.ssl_certificate_location),
        ("KAFKA_SSL_KEY_LOCATION", kafka.ssl_key_location),
        ("KAFKA_SASL_PASSWORD_FILE", kafka.sasl_password_file if kafka.uses_sasl else ""),
    )
    for variable, path in files:
        if path and not os.path.isfile(path):
            problems.append(f"{variable}: no such file {path}")
        elif path and variable.startswith("KAFKA_SSL") and not kafka.uses_tls:
            problems.append(f"{variable}: set, but {protocol} does not use TLS (SSL or SASL_SSL do)")
    if bool(kafka.ssl_certificate_location) != bool(kafka.ssl_key_location):
        problems.append(
            "KAFKA_SSL_KEY_LOCATION: a client certificate needs its key, and a key its certificate "
            "(set KAFKA_SSL_CERTIFICATE_LOCATION and KAFKA_SSL_KEY_LOCATION together)"
        )
    if kafka.ssl_key_password.get_secret_value() and not kafka.ssl_key_location:
        problems.append("KAFKA_SSL_KEY_PASSWORD: set, but there is no KAFKA_SSL_KEY_LOCATION")
    return problems
