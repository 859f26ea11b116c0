"""``cryptopipe prices-consumer``, ``alerts-consumer`` and ``books-consumer``: Kafka -> Redis.

Each is a service on the runtime kit: :func:`run` takes its settings (:mod:`cryptopipe.store.settings`,
read from ``PRICES_CONSUMER_*`` / ``ALERTS_CONSUMER_*`` / ``BOOKS_CONSUMER_*``; their type says which
consumer) and a
:class:`~cryptopipe.runtime.Stop`, and returns the loop's books. Kafka and Redis come from
KAFKA_BOOTSTRAP_SERVERS / REDIS_URL (and the rest of KafkaSettings and RedisSettings); flags
override the environment. SIGINT/SIGTERM finish the current batch, commit and exit 0; the books
(``--stats-json`` or CRYPTOPIPE_STATS_JSON) are written atomically at exit, with the final metrics.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis
from confluent_kafka import KafkaException

from cryptopipe import schemas
from cryptopipe.runtime import (
    Stop,
    add_run_arguments,
    configured,
    ensure_topics,
    run_service,
    run_settings_from,
)
from cryptopipe.runtime.kafka import KafkaLoginRefused
from cryptopipe.schemas import (
    ALERTS,
    BOOK_SNAPSHOTS,
    BOOK_UPDATES,
    DEAD_LETTERS,
    PRICES,
    KafkaSettings,
    RedisSettings,
    TopicSpec,
)
from cryptopipe.store.alerts import AlertSink
from cryptopipe.store.book_rebuild import WarmStart
from cryptopipe.store.books import BookSink
from cryptopipe.store.errors import ConfigError, RedisRefusedError, StoreError
from cryptopipe.store.latency import LatencyReservoir
from cryptopipe.store.loop import ConsumerLoop
from cryptopipe.store.prices import PriceSink
from cryptopipe.store.settings import AlertsConsumerSettings, BooksConsumerSettings, PricesConsumerSettings
from cryptopipe.store.sink import Sink, connect_redis, refused

logger = logging.getLogger(__name__)

ConsumerSettings = PricesConsumerSettings | AlertsConsumerSettings | BooksConsumerSettings


def _kind(settings: ConsumerSettings) -> tuple[str, TopicSpec]:
    """The consumer's name and the topic it reads."""
    if isinstance(settings, PricesConsumerSettings):
        return "prices", PRICES
    if isinstance(settings, BooksConsumerSettings):
        return "books", BOOK_UPDATES
    return "alerts", ALERTS


def _common_parser(kind: str, prog: str, description: str) -> argparse.ArgumentParser:
    """Flags default to None: a flag given overrides ``{KIND}_CONSUMER_*``, one left out does not."""
    variable = f"{kind.upper()}_CONSUMER_"
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--group", help=f"Kafka consumer group id ({variable}GROUP; cryptopipe-{kind})")
    parser.add_argument(
        "--batch-size", type=int, help=f"most records written per Redis pipeline ({variable}BATCH_SIZE)"
    )
    parser.add_argument(
        "--from-beginning",
        action="store_true",
        default=None,
        help=f"a new group starts at the oldest retained record ({variable}FROM_BEGINNING)",
    )
    parser.add_argument(
        "--stall-timeout-s",
        type=float,
        help=f"seconds without progress that make a stall ({variable}STALL_TIMEOUT_S)",
    )
    parser.add_argument(
        "--metrics-port", type=int, help=f"/metrics port; 0 any free, -1 none ({variable}METRICS_PORT)"
    )
    parser.add_argument("--metrics-host", help=f"/metrics bind address ({variable}METRICS_HOST)")
    parser.add_argument(
        "--latency-samples",
        type=Path,
        metavar="PATH",
        help=f"write system-latency samples (µs) as JSON here on exit ({variable}LATENCY_SAMPLES)",
    )
    add_run_arguments(parser)
    return parser


def build_parser() -> argparse.ArgumentParser:
    """Flags of ``cryptopipe prices-consumer``."""
    parser = _common_parser(
        "prices",
        "cryptopipe prices-consumer",
        "Consume trades from the prices topic into Redis: latest price per symbol and capped history.",
    )
    parser.add_argument(
        "--history-cap", type=int, help="trades kept per symbol in the history (PRICES_CONSUMER_HISTORY_CAP)"
    )
    return parser


def build_alerts_parser() -> argparse.ArgumentParser:
    """Flags of ``cryptopipe alerts-consumer``."""
    parser = _common_parser(
        "alerts",
        "cryptopipe alerts-consumer",
        "Consume alerts from the alerts topic into Redis: a capped newest-first feed, each alert once.",
    )
    parser.add_argument("--feed-cap", type=int, help="alerts kept in the feed (ALERTS_CONSUMER_FEED_CAP)")
    return parser


def build_books_parser() -> argparse.ArgumentParser:
    """Flags of ``cryptopipe books-consumer``."""
    parser = _common_parser(
        "books",
        "cryptopipe books-consumer",
        "Consume order-book records from the book-updates topic into Redis: the top of each symbol's book.",
    )
    parser.add_argument("--levels", type=int, help="levels per side kept in Redis (BOOKS_CONSUMER_LEVELS)")
    parser.add_argument(
        "--warm-start",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="rebuild a symbol met mid-epoch from its checkpoint (BOOKS_CONSUMER_WARM_START)",
    )
    return parser


def load_servers() -> tuple[KafkaSettings, RedisSettings]:
    """Kafka and Redis settings from the environment; both servers must be configured here.

    Raises :class:`cryptopipe.schemas.ConfigError` (a wrong value) or its subclass
    :class:`ConfigError` (a missing server), each naming the environment variable.
    """
    kafka = schemas.load_settings(KafkaSettings)
    redis_settings = schemas.load_settings(RedisSettings)
    if not kafka.bootstrap_servers:
        raise ConfigError(
            "KAFKA_BOOTSTRAP_SERVERS", "is empty; set it to the broker address, e.g. 127.0.0.1:9092"
        )
    if not redis_settings.url.get_secret_value():
        raise ConfigError("REDIS_URL", "is empty; set it to the Redis URL, e.g. redis://127.0.0.1:6379/0")
    return kafka, redis_settings


def run(
    settings: ConsumerSettings,
    stop: Stop,
    *,
    kafka: KafkaSettings | None = None,
    redis_settings: RedisSettings | None = None,
) -> dict[str, Any]:
    """The prices, alerts or books consumer (by the type of ``settings``) until ``stop``: its books
    (``topic``, ``consumed``, ``written``, ...; the books consumer adds ``book_records``).

    A store failure ends it too: the books then carry ``error``, so whoever reads them sees why and
    what was written before.
    """
    kind, topic_spec = _kind(settings)
    if kafka is None or redis_settings is None:
        kafka, redis_settings = load_servers()
    topic = topic_spec.with_prefix(kafka.topic_prefix)
    try:
        ensure_topics(kafka, [topic, DEAD_LETTERS.with_prefix(kafka.topic_prefix)], timeout_s=15.0)
    except KafkaException as exc:
        logger.warning("cannot reach the broker to create topics (%s); assuming they exist", exc)
    reservoir = LatencyReservoir() if settings.latency_samples else None
    client = connect_redis(redis_settings.url.get_secret_value())
    loop: ConsumerLoop[Any] | None = None
    books: dict[str, Any] = {"topic": topic.name}
    sink = _sink(settings, client, redis_settings.key_prefix, kafka)
    try:
        _check_access(client, f"{kind}-consumer")
        loop = ConsumerLoop(
            sink,
            kafka=kafka,
            topic=topic.name,
            group_id=settings.group,
            batch_size=settings.batch_size,
            from_beginning=settings.from_beginning,
            latency_sink=reservoir.add if reservoir is not None else None,
            stall_timeout_s=settings.stall_timeout_s,
        )
        _run_until(loop, stop)
    except (StoreError, KafkaLoginRefused) as exc:
        if isinstance(exc, RedisRefusedError) and redis_settings.password_file:
            exc = exc.naming("REDIS_PASSWORD_FILE")
        logger.error("%s-consumer failed: %s", kind, exc)
        books["error"] = str(exc)
    finally:
        client.close()
        if loop is not None:
            books.update(dataclasses.asdict(loop.stats))
        if isinstance(sink, BookSink):
            books["book_records"] = dataclasses.asdict(sink.counts())
        if reservoir is not None and settings.latency_samples is not None:
            reservoir.write_json(settings.latency_samples)
            logger.info("wrote %d latency samples to %s", len(reservoir.samples), settings.latency_samples)
    return books


def _sink(settings: ConsumerSettings, client: Any, key_prefix: str, kafka: KafkaSettings) -> Sink[Any]:
    if isinstance(settings, PricesConsumerSettings):
        return PriceSink(client, key_prefix=key_prefix, history_cap=settings.history_cap)
    if isinstance(settings, BooksConsumerSettings):
        warm = WarmStart(
            kafka,
            updates_topic=BOOK_UPDATES.with_prefix(kafka.topic_prefix).name,
            snapshots_topic=BOOK_SNAPSHOTS.with_prefix(kafka.topic_prefix).name,
        )
        return BookSink(
            client,
            key_prefix=key_prefix,
            levels=settings.levels,
            warm_start=warm if settings.warm_start else None,
        )
    return AlertSink(client, key_prefix=key_prefix, feed_cap=settings.feed_cap)


def _check_access(client: redis.Redis, component: str) -> None:
    """PING with the configured user: a wrong user or password ends the service now, in one line
    (:class:`RedisRefusedError`); a Redis that does not answer yet is the loop's to retry."""
    try:
        client.ping()
    except redis.RedisError as exc:
        reason = refused(exc)
        if reason is not None:
            raise RedisRefusedError(component, reason, str(exc)) from None
        logger.warning("%s: Redis does not answer yet (%s); writes will retry", component, exc)


def _run_until(loop: ConsumerLoop[Any], stop: Stop) -> None:
    """``loop.run()`` here, ``loop.stop()`` when ``stop`` is set (from a small watcher thread)."""
    finished = threading.Event()

    def watch() -> None:
        while not finished.is_set():
            if stop.wait(0.1):
                loop.stop()
                return

    watcher = threading.Thread(target=watch, name="stop-watcher", daemon=True)
    watcher.start()
    try:
        loop.run()
    finally:
        finished.set()
        watcher.join(1.0)


def _main(
    kind: str,
    parser: argparse.ArgumentParser,
    cls: type[ConsumerSettings],
    argv: Sequence[str] | None,
) -> int:
    args = parser.parse_args(argv)
    flags = {name: getattr(args, name, None) for name in cls.model_fields}
    loaded = configured(
        f"{kind}-consumer",
        lambda: (schemas.load_settings(cls, **flags), run_settings_from(args), *load_servers()),
    )
    if loaded is None:
        return 2
    settings, run_settings, kafka, redis_settings = loaded
    books = run_service(
        f"{kind}-consumer",
        lambda s, stop: run(s, stop, kafka=kafka, redis_settings=redis_settings),
        settings,
        run_settings=run_settings,
    )
    return 1 if "error" in books else 0


def prices_main(argv: Sequence[str] | None = None) -> int:
    """``cryptopipe prices-consumer``."""
    return _main("prices", build_parser(), PricesConsumerSettings, argv)


main = prices_main


def alerts_main(argv: Sequence[str] | None = None) -> int:
    """``cryptopipe alerts-consumer``."""
    return _main("alerts", build_alerts_parser(), AlertsConsumerSettings, argv)


def books_main(argv: Sequence[str] | None = None) -> int:
    """``cryptopipe books-consumer``."""
    return _main("books", build_books_parser(), BooksConsumerSettings, argv)


if __name__ == "__main__":
    sys.exit(main())
