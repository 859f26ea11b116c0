"""What must hold before a pipeline starts, checked in seconds: a configured broker and Redis
answer, every replay file yields a first record, live Binance is reachable. Each problem is one
:class:`~cryptopipe.schemas.ConfigError` line that names the flag or variable to fix."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import redis
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from cryptopipe.replay.errors import ReplayError, SourceError
from cryptopipe.replay.sources.build import open_file_source
from cryptopipe.schemas import ConfigError, DecodeError, KafkaSettings, RedisSettings, redact_url

#: librdkafka reports each failed connection attempt through the client's logger; a preflight
#: says what failed in one line of its own, so these go nowhere.
_QUIET = logging.getLogger("cryptopipe.pipeline.preflight.librdkafka")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


def check_kafka(settings: KafkaSettings, timeout_s: float = 5.0) -> None:
    """A configured broker (KAFKA_BOOTSTRAP_SERVERS) answers a metadata request within ``timeout_s``."""
    if not settings.bootstrap_servers:
        return
    config: dict[str, Any] = {**settings.client_config(), "logger": _QUIET}
    admin = AdminClient(config)
    try:
        metadata = admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        reason = exc.args[0].str() if exc.args and hasattr(exc.args[0], "str") else str(exc)
        raise ConfigError(
            f"KAFKA_BOOTSTRAP_SERVERS={settings.bootstrap_servers}: no Kafka broker answered within "
            f"{timeout_s:g} s ({reason})"
        ) from None
    if not metadata.brokers:
        raise ConfigError(
            f"KAFKA_BOOTSTRAP_SERVERS={settings.bootstrap_servers}: the cluster lists no broker"
        )


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
