"""Small measurements behind the store's defaults, reusable by ``cryptopipe bench``.

- :func:`measure_redis_set_floor`: raw SET round trips, the floor under any Redis write.
- :func:`measure_sink_modes`: one EVALSHA per symbol per batch vs one per trade.
- :func:`measure_batch_sizes`: written msgs/s through the whole loop (Kafka -> Redis) per batch size.
  Each run's books must balance: every record the broker acknowledged is written, stale or
  dead-lettered (:func:`unwritten`), or the measurement fails instead of reporting a rate.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Sequence
from decimal import Decimal

from confluent_kafka import Producer

from cryptopipe.runtime import ensure_topics
from cryptopipe.schemas import DEAD_LETTERS, PRICES, KafkaSettings, TopicSpec, Trade, encode, encode_key
from cryptopipe.schemas.topics import PARTITIONER
from cryptopipe.store.loop import ConsumerLoop, LoopStats
from cryptopipe.store.prices import PriceSink
from cryptopipe.store.sink import connect_redis, delete_prefixed


def unwritten(published: int, stats: LoopStats) -> int:
    """Records acknowledged by the broker that the loop neither wrote, found stale nor dead-lettered."""
    return max(0, published - (stats.written + stats.stale + stats.dead_lettered))


def measure_redis_set_floor(redis_url: str, n: int = 1000) -> list[float]:
    """``n`` sequential SET round trips on one connection, each in milliseconds."""
    client = connect_redis(redis_url)
    key = f"cryptopipe:bench:floor:{uuid.uuid4().hex}"
    try:
        client.set(key, b"0")  # connect outside the measurement
        samples: list[float] = []
        for i in range(n):
            started = time.perf_counter_ns()
            client.set(key, i)
            samples.append((time.perf_counter_ns() - started) / 1e6)
        client.delete(key)
        return samples
    finally:
        client.close()


def synthetic_trades(n: int, symbols: Sequence[str] = ("BTCUSDT", "ETHUSDT", "BNBUSDT")) -> list[Trade]:
    """``n`` live trades round-robin over ``symbols``, ids increasing, stamped now."""
    now = time.time_ns() // 1000
    return [
        Trade(
            symbol=symbols[i % len(symbols)],
            trade_id=i,
            price=Decimal("60000.01") + Decimal(i % 100) / 100,
            quantity=Decimal("0.00120000"),
            buyer_is_maker=i % 2 == 0,
            trade_time_us=now - 1000 + i,
            event_time_us=now - 900 + i,
            receive_time_us=now + i,
            kind="trade",
        )
        for i in range(n)
    ]


def measure_sink_modes(
    redis_url: str, *, batch_sizes: Iterable[int] = (1, 10, 100, 500), n: int = 20_000
) -> dict[str, dict[int, float]]:
    """Trades/s written by :class:`PriceSink` alone, per mode ("per_symbol", "per_trade") and batch size."""
    client = connect_redis(redis_url)
    out: dict[str, dict[int, float]] = {"per_symbol": {}, "per_trade": {}}
    try:
        for mode in out:
            for size in batch_sizes:
                prefix = f"cryptopipe:bench:{uuid.uuid4().hex[:8]}:"
                sink = PriceSink(client, key_prefix=prefix, per_trade=mode == "per_trade")
                trades = synthetic_trades(n)
                sink.write(trades[:1])  # load the script outside the measurement
                started = time.perf_counter()
                for i in range(0, n, size):
                    sink.write(trades[i : i + size])
                out[mode][size] = n / (time.perf_counter() - started)
                delete_prefixed(client, prefix)
    finally:
        client.close()
    return out


def _fill(kafka: KafkaSettings, topic: str, n: int) -> int:
    """Produce ``n`` synthetic trades keyed by symbol; returns how many the broker acknowledged."""
    producer = Producer({**kafka.client_config(), "linger.ms": 5, "partitioner": PARTITIONER})
    acked = 0

    def delivered(error: object, _message: object) -> None:
        nonlocal acked
        if error is None:
            acked += 1

    for trade in synthetic_trades(n):
        while True:
            try:
                producer.produce(topic, encode(trade), encode_key(trade.symbol), on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush(30)
    return acked


def measure_batch_sizes(
    kafka: KafkaSettings,
    redis_url: str,
    *,
    batch_sizes: Iterable[int] = (1, 10, 100, 500),
    n: int = 20_000,
    partitions: int = PRICES.partitions,
    consumer_overrides: dict[str, object] | None = None,
) -> dict[int, float]:
    """Written msgs/s through :class:`ConsumerLoop` + :class:`PriceSink`, per batch size.

    The topic is filled first, then drained from the beginning; the clock runs from the first
    batch written to the last, so group joins and topic creation are not measured.
    """
    client = connect_redis(redis_url)
    out: dict[int, float] = {}
    try:
        for size in batch_sizes:
            settings = kafka.model_copy(update={"topic_prefix": f"bench-{uuid.uuid4().hex[:8]}-"})
            topic = PRICES.with_prefix(settings.topic_prefix).name
            ensure_topics(
                settings,
                [TopicSpec(topic, partitions), DEAD_LETTERS.with_prefix(settings.topic_prefix)],
                replication_factor=1,
                timeout_s=30,
            )
            acked = _fill(settings, topic, n)
            if acked != n:
                raise RuntimeError(f"batch size {size}: the broker acknowledged {acked} of {n} records")
            prefix = f"cryptopipe:bench:{uuid.uuid4().hex[:8]}:"
            loop = ConsumerLoop(
                PriceSink(client, key_prefix=prefix),
                kafka=settings,
                topic=topic,
                group_id=f"bench-{uuid.uuid4().hex[:8]}",
                batch_size=size,
                from_beginning=True,
                consumer_overrides=consumer_overrides,
            )
            first: float | None = None
            counted_from = 0
            deadline = time.monotonic() + 300
            with loop:
                while loop.stats.consumed < n and time.monotonic() < deadline:
                    if loop.run_once(0.5) and first is None:
                        first = time.perf_counter()
                        counted_from = loop.stats.consumed
            if first is None or loop.stats.consumed < n:
                raise RuntimeError(f"batch size {size}: only {loop.stats.consumed} of {n} records consumed")
            missing = unwritten(acked, loop.stats)
            if missing:
                raise RuntimeError(
                    f"batch size {size}: BOOKS DO NOT BALANCE: {missing} of {acked} published records "
                    f"were never written to Redis ({loop.stats})"
                )
            out[size] = (n - counted_from) / (time.perf_counter() - first)
            delete_prefixed(client, prefix)
    finally:
        client.close()
    return out
