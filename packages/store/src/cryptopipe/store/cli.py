"""``cryptopipe prices-consumer`` and ``cryptopipe alerts-consumer``: Kafka -> Redis.

Both read KAFKA_BOOTSTRAP_SERVERS / REDIS_URL (and the other variables of KafkaSettings and
RedisSettings) from the environment or ``.env``; flags override the rest. SIGINT/SIGTERM finish
the current batch, commit and exit 0.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from confluent_kafka import KafkaException

from cryptopipe import schemas
from cryptopipe.observability import serve_metrics
from cryptopipe.runtime import ensure_topics
from cryptopipe.schemas import ALERTS, DEAD_LETTERS, PRICES, KafkaSettings, RedisSettings, TopicSpec
from cryptopipe.store.alerts import DEFAULT_FEED_CAP, AlertSink
from cryptopipe.store.errors import ConfigError, StoreError
from cryptopipe.store.latency import DEFAULT_CAPACITY, LatencyReservoir
from cryptopipe.store.loop import DEFAULT_BATCH_SIZE, ConsumerLoop
from cryptopipe.store.prices import DEFAULT_HISTORY_CAP, PriceSink
from cryptopipe.store.sink import Sink, connect_redis

logger = logging.getLogger(__name__)

PRICES_METRICS_PORT = 9102
ALERTS_METRICS_PORT = 9103


def _common_parser(kind: str, prog: str, description: str, metrics_port: int) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument(
        "--group", default=f"cryptopipe-{kind}", help="Kafka consumer group id (default: %(default)s)"
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        help="most records written per Redis pipeline; batches never wait to fill (default: %(default)s)",
    )
    parser.add_argument(
        "--from-beginning",
        action="store_true",
        help="a new group starts at the oldest retained record instead of the newest",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=metrics_port,
        help="Prometheus /metrics port; 0 picks a free one, -1 serves none (default: %(default)s)",
    )
    parser.add_argument(
        "--metrics-host", default="127.0.0.1", help="/metrics bind address (default: %(default)s)"
    )
    parser.add_argument(
        "--latency-samples",
        metavar="PATH",
        help=f"write system-latency samples (µs, up to {DEFAULT_CAPACITY:,}) as JSON here on exit",
    )
    parser.add_argument(
        "--stats-json",
        metavar="PATH",
        help="write the loop's counts (topic, consumed, written, stale, dead_lettered, ...) as JSON "
        "here on exit; `cryptopipe up` balances its books with them",
    )
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser


def build_parser() -> argparse.ArgumentParser:
    """Flags of ``cryptopipe prices-consumer``."""
    parser = _common_parser(
        "prices",
        "cryptopipe prices-consumer",
        "Consume trades from the prices topic into Redis: latest price per symbol and capped history.",
        PRICES_METRICS_PORT,
    )
    parser.add_argument(
        "--history-cap",
        type=int,
        default=DEFAULT_HISTORY_CAP,
        help="trades kept per symbol in the history sorted set (default: %(default)s)",
    )
    return parser


def build_alerts_parser() -> argparse.ArgumentParser:
    """Flags of ``cryptopipe alerts-consumer``."""
    parser = _common_parser(
        "alerts",
        "cryptopipe alerts-consumer",
        "Consume alerts from the alerts topic into Redis: a capped newest-first feed, each alert once.",
        ALERTS_METRICS_PORT,
    )
    parser.add_argument(
        "--feed-cap",
        type=int,
        default=DEFAULT_FEED_CAP,
        help="alerts kept in the feed list (default: %(default)s)",
    )
    return parser


def load_settings() -> tuple[KafkaSettings, RedisSettings]:
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


@contextlib.contextmanager
def _stop_on_signals(stop: Callable[[], None]) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: FrameType | None) -> None:
        logger.info("%s received: finishing the current batch", signal.Signals(signum).name)
        stop()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _configure_logging(level: str) -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("cryptopipe").setLevel(level)


def _run(
    args: argparse.Namespace, kind: str, topic_spec: TopicSpec, make_sink: Callable[[Any, str], Sink[Any]]
) -> int:
    _configure_logging(args.log_level)
    try:
        kafka, redis_settings = load_settings()
    except schemas.ConfigError as exc:
        print(f"cryptopipe {kind}-consumer: {exc}", file=sys.stderr)
        return 2
    if args.batch_size < 1:
        print(f"cryptopipe {kind}-consumer: --batch-size must be >= 1", file=sys.stderr)
        return 2
    topic = topic_spec.with_prefix(kafka.topic_prefix)
    try:
        ensure_topics(kafka, [topic, DEAD_LETTERS.with_prefix(kafka.topic_prefix)], timeout_s=15.0)
    except KafkaException as exc:
        logger.warning("cannot reach the broker to create topics (%s); assuming they exist", exc)
    if args.metrics_port >= 0:
        serve_metrics(f"{kind}-consumer", args.metrics_port, args.metrics_host)
    reservoir = LatencyReservoir() if args.latency_samples else None
    client = connect_redis(redis_settings.url.get_secret_value())
    loop: ConsumerLoop[Any] | None = None
    try:
        loop = ConsumerLoop(
            make_sink(client, redis_settings.key_prefix),
            kafka=kafka,
            topic=topic.name,
            group_id=args.group,
            batch_size=args.batch_size,
            from_beginning=args.from_beginning,
            latency_sink=reservoir.add if reservoir is not None else None,
        )
        with _stop_on_signals(loop.stop):
            loop.run()
    except StoreError as exc:
        logger.error("%s-consumer failed: %s", kind, exc)
        return 1
    finally:
        client.close()
        if args.stats_json and loop is not None:
            _write_json(Path(args.stats_json), {"topic": topic.name, **dataclasses.asdict(loop.stats)})
        if reservoir is not None:
            reservoir.write_json(args.latency_samples)
            logger.info("wrote %d latency samples to %s", len(reservoir.samples), args.latency_samples)
    return 0


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    tmp.replace(path)


def prices_main(argv: Sequence[str] | None = None) -> int:
    """``cryptopipe prices-consumer``."""
    args = build_parser().parse_args(argv)
    if args.history_cap < 1:
        print("cryptopipe prices-consumer: --history-cap must be >= 1", file=sys.stderr)
        return 2
    return _run(
        args,
        "prices",
        PRICES,
        lambda client, prefix: PriceSink(client, key_prefix=prefix, history_cap=args.history_cap),
    )


main = prices_main


def alerts_main(argv: Sequence[str] | None = None) -> int:
    """``cryptopipe alerts-consumer``."""
    args = build_alerts_parser().parse_args(argv)
    if args.feed_cap < 1:
        print("cryptopipe alerts-consumer: --feed-cap must be >= 1", file=sys.stderr)
        return 2
    return _run(
        args,
        "alerts",
        ALERTS,
        lambda client, prefix: AlertSink(client, key_prefix=prefix, feed_cap=args.feed_cap),
    )


if __name__ == "__main__":
    sys.exit(main())
