"""What must hold before a pipeline starts, checked in seconds: a configured broker and Redis
answer, every replay file yields a first record, live Binance is reachable. Each problem is one
:class:`~cryptopipe.schemas.ConfigError` line that names the flag or variable to fix."""

from __future__ import annotations

import json
import logging
import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import redis
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from cryptopipe.replay.errors import ReplayError, SourceError
from cryptopipe.replay.sources.build import open_file_source
from cryptopipe.schemas import (
    ConfigError,
    DecodeError,
    KafkaSettings,
    RedisSettings,
    load_settings,
    redact_url,
)
from cryptopipe.schemas.kafka_settings import DEFAULT_PRINCIPAL

#: librdkafka reports each failed connection attempt through the client's logger; a preflight
#: says what failed in one line of its own, so these go nowhere.
_QUIET = logging.getLogger("cryptopipe.pipeline.preflight.librdkafka")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


class _Collect(logging.Handler):
    """Keeps librdkafka's log lines of one probe (one says "incorrect security.protocol")."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def check_kafka(settings: KafkaSettings, timeout_s: float = 5.0) -> None:
    """A configured broker (KAFKA_BOOTSTRAP_SERVERS) answers a metadata request within ``timeout_s``,
    with these credentials; with KAFKA_PRINCIPALS_FILE, so does every principal it lists (the
    services' own). A refused password, an untrusted certificate or a protocol the listener does
    not speak is one :class:`ConfigError` line naming the setting, at the first refusal."""
    if not settings.bootstrap_servers:
        return
    _check_login(settings, timeout_s)
    if settings.principals_file:
        for principal in _principals(settings.principals_file):
            if principal != (settings.principal or DEFAULT_PRINCIPAL):
                _check_login(
                    load_settings(
                        KafkaSettings, principals_file=settings.principals_file, principal=principal
                    ),
                    timeout_s,
                )


def _principals(path: str) -> list[str]:
    with open(path, encoding="utf-8") as handle:
        return sorted(json.load(handle)["principals"])


def _check_login(settings: KafkaSettings, timeout_s: float) -> None:
    errors: list[KafkaError] = []
    collect = _Collect()
    quiet = logging.getLogger(f"{_QUIET.name}.{id(collect)}")
    quiet.addHandler(collect)
    quiet.propagate = False
    config: dict[str, Any] = {**settings.client_config(), "logger": quiet, "error_cb": errors.append}
    admin = AdminClient(config)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                metadata = admin.list_topics(timeout=max(0.1, min(0.5, deadline - time.monotonic())))
                break
            except KafkaException as exc:
                admin.poll(0)
                refusal = _refusal(settings, errors, collect.lines)
                if refusal is not None:
                    raise ConfigError(refusal) from None
                if time.monotonic() >= deadline:
                    reason = exc.args[0].str() if exc.args and hasattr(exc.args[0], "str") else str(exc)
                    raise ConfigError(
                        f"KAFKA_BOOTSTRAP_SERVERS={settings.bootstrap_servers}: no Kafka broker answered "
                        f"within {timeout_s:g} s ({reason})"
                    ) from None
    finally:
        quiet.removeHandler(collect)
    if not metadata.brokers:
        raise ConfigError(
            f"KAFKA_BOOTSTRAP_SERVERS={settings.bootstrap_servers}: the cluster lists no broker"
        )


#: TLS alerts a server sends a client that brought no certificate where one is required.
_NO_CLIENT_CERTIFICATE = ("certificate required", "bad certificate")


def _refusal(settings: KafkaSettings, errors: list[KafkaError], lines: list[str]) -> str | None:
    """The one line for a connection the broker refused, naming the setting to fix; None if none was."""
    where = f"Kafka at {settings.bootstrap_servers}"
    if not settings.ssl_certificate_location and settings.uses_tls:
        said = [error.str() for error in errors] + lines
        if any(alert in text.lower() for text in said for alert in _NO_CLIENT_CERTIFICATE):
            return (
                f"KAFKA_SSL_CERTIFICATE_LOCATION: {where} asks for a client certificate (mTLS) and "
                "none is set (KAFKA_SSL_CERTIFICATE_LOCATION and KAFKA_SSL_KEY_LOCATION)"
            )
    for error in errors:
        if error.code() == KafkaError._AUTHENTICATION:
            return settings.login_refused()
        if error.code() == KafkaError._SSL:
            return (
                f"KAFKA_SSL_CA_LOCATION: the TLS handshake with {where} failed; is its CA "
                f"({settings.ssl_ca_location or 'the system store'}) the broker's? ({error.str()})"
            )
    if any("security.protocol" in line for line in lines) or (
        not settings.uses_tls and _speaks_tls(settings)
    ):
        return (
            f"KAFKA_SECURITY_PROTOCOL={settings.security_protocol}: {where} closed the connection before "
            "it answered; its listener speaks another protocol (TLS: SSL or SASL_SSL?)"
        )
    return None


def _speaks_tls(settings: KafkaSettings, timeout_s: float = 2.0) -> bool:
    """Whether the first bootstrap server completes a TLS handshake (its certificate unchecked):
    a plaintext client's requests get no answer there, only a timeout."""
    host, _, port = settings.bootstrap_servers.split(",")[0].strip().rpartition(":")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s) as raw,
            context.wrap_socket(raw, server_hostname=host.strip("[]")),
        ):
            return True
    except (OSError, ValueError):
        return False


def check_redis(settings: RedisSettings, timeout_s: float = 3.0) -> None:
    """A configured Redis (REDIS_URL) answers PING within ``timeout_s``."""
    url = settings.url.get_secret_value()
    if not url:
        return
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
    try:
        client.ping()
    except redis.AuthenticationError as exc:
        raise ConfigError(f"REDIS_URL={redact_url(url)}: Redis refused the credentials ({exc})") from None
    except redis.RedisError as exc:
        raise ConfigError(
            f"REDIS_URL={redact_url(url)}: Redis did not answer within {timeout_s:g} s ({exc})"
        ) from None
    finally:
        client.close()


def check_replay_files(specs: Iterable[str | Path]) -> None:
    """Every ``--replay-file`` opens and yields a first record (a trade or a recorded frame)."""
    for spec in specs:
        try:
            source = open_file_source(spec)
            first = next(iter(source.events()), None)
        except SourceError as exc:  # it names the file (and the line) itself
            raise ConfigError(f"--replay-file {exc}") from None
        except (ReplayError, DecodeError, OSError, UnicodeDecodeError, ValueError) as exc:
            raise ConfigError(f"--replay-file {spec}: {exc}") from None
        if first is None:
            raise ConfigError(f"--replay-file {spec}: holds no trade or recorded frame")


def check_binance(rest_url: str, timeout: float = 5.0) -> str | None:
    """None when Binance's REST API answers; otherwise the reason, for one clear line."""
    try:
        with urllib.request.urlopen(f"{rest_url}/api/v3/time", timeout=timeout) as response:
            json.loads(response.read())
        return None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"{type(reason).__name__}: {reason}" if not isinstance(reason, str) else reason
