"""Connection settings shared by every service that talks to Kafka or Redis.

Precedence, written down once: CLI flag > environment variable > ``.env`` file > default.
Each field names its environment variable explicitly (no prefix magic), and every variable is
listed in docs/configuration.md, which a test keeps in step with these classes.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_CONFIG = SettingsConfigDict(
    env_file=".env",
    env_file_encoding="utf-8",
    extra="ignore",
    frozen=True,
    populate_by_name=True,
)


def _env(name: str) -> Any:
    return AliasChoices(name)


class KafkaSettings(BaseSettings):
    """Where the Kafka-protocol broker is, and how to authenticate to it.

    An empty ``bootstrap_servers`` means "find or start one" (embedded mode).
    """

    model_config = _CONFIG

    bootstrap_servers: str = Field(
        "",
        validation_alias=_env("KAFKA_BOOTSTRAP_SERVERS"),
        description="Kafka bootstrap servers (host:port,...). Empty: find or start a local broker.",
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT",
        validation_alias=_env("KAFKA_SECURITY_PROTOCOL"),
        description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.",
    )
    sasl_mechanism: str = Field(
        "", validation_alias=_env("KAFKA_SASL_MECHANISM"), description="e.g. PLAIN, SCRAM-SHA-512."
    )
    sasl_username: str = Field(
        "", validation_alias=_env("KAFKA_SASL_USERNAME"), description="SASL user name."
    )
    sasl_password: SecretStr = Field(
        SecretStr(""), validation_alias=_env("KAFKA_SASL_PASSWORD"), description="SASL password (secret)."
    )
    ssl_ca_location: str = Field(
        "", validation_alias=_env("KAFKA_SSL_CA_LOCATION"), description="CA bundle for SSL brokers."
    )
    topic_prefix: str = Field(
        "", validation_alias=_env("KAFKA_TOPIC_PREFIX"), description="Prefix for every topic name."
    )

    def client_config(self) -> dict[str, str]:
        """librdkafka settings common to producers, consumers and admin clients."""
        config = {"bootstrap.servers": self.bootstrap_servers, "security.protocol": self.security_protocol}
        if self.sasl_mechanism:
            config["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_username:
            config["sasl.username"] = self.sasl_username
            config["sasl.password"] = self.sasl_password.get_secret_value()
        if self.ssl_ca_location:
            config["ssl.ca.location"] = self.ssl_ca_location
        return config


class RedisSettings(BaseSettings):
    """Where Redis is. ``redis://`` or ``rediss://`` (TLS); may carry a password.

    An empty URL means "find or start one" (embedded mode).
    """

    model_config = _CONFIG

    url: SecretStr = Field(
        SecretStr(""),
        validation_alias=_env("REDIS_URL"),
        description=(
            "redis://[:password@]host:port/db or rediss:// (secret). Empty: find or start a local Redis."
        ),
    )
    key_prefix: str = Field(
        "cryptopipe:", validation_alias=_env("REDIS_KEY_PREFIX"), description="Prefix for every Redis key."
    )

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: SecretStr) -> SecretStr:
        raw = value.get_secret_value()
        if raw and not raw.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("REDIS_URL must start with redis://, rediss:// or unix://")
        return value
