"""Settings of ``cryptopipe prices-consumer``, ``alerts-consumer`` and ``books-consumer``.

Precedence: CLI flag > environment variable > ``.env`` file > default. The consumers share one
definition of their common fields and differ in their variables' prefix (``PRICES_CONSUMER_``,
``ALERTS_CONSUMER_``, ``BOOKS_CONSUMER_``), their defaults (group, metrics port) and a setting or
two each. Kafka and Redis come from ``KafkaSettings`` and ``RedisSettings``, as for every service.
"""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings

from cryptopipe.schemas import SETTINGS_CONFIG, setting
from cryptopipe.store.alerts import DEFAULT_FEED_CAP
from cryptopipe.store.book_store import DEFAULT_BOOK_LEVELS
from cryptopipe.store.latency import DEFAULT_CAPACITY
from cryptopipe.store.loop import DEFAULT_BATCH_SIZE, DEFAULT_STALL_TIMEOUT_S
from cryptopipe.store.prices import DEFAULT_HISTORY_CAP

PRICES_METRICS_PORT = 9102
ALERTS_METRICS_PORT = 9103
BOOKS_METRICS_PORT = 9107


def _consumer_settings(kind: str, port: int) -> type[BaseSettings]:
    """The fields both consumers have, read from ``{KIND}_CONSUMER_*``."""
    prefix = f"{kind.upper()}_CONSUMER_"

    class ConsumerSettings(BaseSettings):
        model_config = SETTINGS_CONFIG

        group: str = setting(prefix + "GROUP", f"cryptopipe-{kind}", min_length=1)
        """Kafka consumer group id."""
        batch_size: int = setting(prefix + "BATCH_SIZE", DEFAULT_BATCH_SIZE, ge=1)
        """Most records written per Redis pipeline; batches never wait to fill."""
        from_beginning: bool = setting(prefix + "FROM_BEGINNING", False)
        """A new group starts at the oldest retained record instead of the newest."""
        stall_timeout_s: float = setting(prefix + "STALL_TIMEOUT_S", DEFAULT_STALL_TIMEOUT_S, gt=0)
        """Records waiting and none written for this long is a stall; the loop then recovers."""
        metrics_port: int = setting(prefix + "METRICS_PORT", port, ge=-1, le=65535)
        """Prometheus /metrics port; 0 picks a free one, -1 serves none."""
        metrics_host: str = setting(prefix + "METRICS_HOST", "127.0.0.1")
        """/metrics bind address."""
        latency_samples: Path | None = setting(
            prefix + "LATENCY_SAMPLES",
            None,
            description=f"Write system-latency samples (µs, up to {DEFAULT_CAPACITY:,}) as JSON at exit.",
        )

    return ConsumerSettings


class PricesConsumerSettings(_consumer_settings("prices", PRICES_METRICS_PORT)):  # type: ignore[misc]
    """``cryptopipe prices-consumer``: trades -> the latest price and a capped history per symbol."""

    history_cap: int = setting("PRICES_CONSUMER_HISTORY_CAP", DEFAULT_HISTORY_CAP, ge=1)
    """Trades kept per symbol in the history sorted set."""


class AlertsConsumerSettings(_consumer_settings("alerts", ALERTS_METRICS_PORT)):  # type: ignore[misc]
    """``cryptopipe alerts-consumer``: alerts -> a capped newest-first feed, each alert once."""

    feed_cap: int = setting("ALERTS_CONSUMER_FEED_CAP", DEFAULT_FEED_CAP, ge=1)
    """Alerts kept in the feed list."""


class BooksConsumerSettings(_consumer_settings("books", BOOKS_METRICS_PORT)):  # type: ignore[misc]
    """``cryptopipe books-consumer``: order-book records -> the top of each symbol's book, never backwards."""

    levels: int = setting("BOOKS_CONSUMER_LEVELS", DEFAULT_BOOK_LEVELS, ge=1, le=5000)
    """Levels per side kept in Redis (the whole book is held in memory)."""
    warm_start: bool = setting("BOOKS_CONSUMER_WARM_START", True)
    """Rebuild a symbol met mid-epoch (after a restart) from its book-snapshots checkpoint."""
