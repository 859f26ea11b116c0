"""Helpers for the store's tests: real trades, a producer, and consumer loops run in threads."""

from __future__ import annotations

import gzip
import itertools
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis

from cryptopipe.infra import KafkaEndpoint
from cryptopipe.infra.testing import produce
from cryptopipe.schemas import (
    DEAD_LETTERS,
    PRICES,
    KafkaSettings,
    RedisSettings,
    Trade,
    binance,
    encode,
    encode_key,
)
from cryptopipe.store import ConsumerLoop, PriceSink, Sink

DATA = Path("/work/shared/data/binance")


def trade(symbol: str, trade_id: int, trade_time_us: int, *, price: str = "100.5", **kw: Any) -> Trade:
    """A trade with the given times (event and receive 0.1 ms and 1 ms after it unless given)."""
    return Trade(
        symbol=symbol,
        trade_id=trade_id,
        price=Decimal(price),
        quantity=Decimal("0.25"),
        buyer_is_maker=trade_id % 2 == 0,
        trade_time_us=trade_time_us,
        event_time_us=kw.pop("event_time_us", trade_time_us + 100),
        receive_time_us=kw.pop("receive_time_us", trade_time_us + 1000),
        kind="trade",
        **kw,
    )


def recorded_trades(limit: int, symbols: Iterable[str] = ("btcusdt", "ethusdt")) -> list[Trade]:
    """The first ``limit`` @trade events of the real recordings, interleaved by receive time."""
    if not DATA.is_dir():
        pytest.skip(f"real Binance recordings not found at {DATA}")
    per_symbol: list[list[Trade]] = []
    for symbol in symbols:
        trades: list[Trade] = []
        with gzip.open(DATA / f"{symbol}_20240808.gz", "rb") as lines:
            for line in lines:
                received_ns, _, payload = line.partition(b" ")
                if b"@trade" not in payload[:60]:
                    continue
                event = binance.parse_event(binance.split_frame(payload).data)
                if event is None:
                    continue
                trades.append(
                    binance.event_to_trade(
                        event, receive_time_us=int(received_ns) // 1000, unit="MILLISECOND"
                    )
                )
                if len(trades) >= limit:
                    break
        per_symbol.append(trades)
    merged = sorted(itertools.chain.from_iterable(per_symbol), key=lambda t: t.receive_time_us)
    return merged[:limit]


def reference_latest(trades: Iterable[Trade]) -> dict[str, Trade]:
    """Per symbol, the trade with the largest (trade_time_us, trade_id)."""
    best: dict[str, Trade] = {}
    for t in trades:
        cur = best.get(t.symbol)
        if cur is None or (t.trade_time_us, t.trade_id) > (cur.trade_time_us, cur.trade_id):
            best[t.symbol] = t
    return best


def produce_trades(settings: KafkaSettings, topic: str, trades: Iterable[Trade]) -> int:
    return produce(settings, topic, ((encode_key(t.symbol), encode(t)) for t in trades))


def fast_group_overrides(kafka: KafkaEndpoint) -> dict[str, Any]:
    """Tansu holds a JoinGroup for half the session timeout: keep it short there (1 s joins).

    Apache Kafka rejects session timeouts under 6 s by default, so only Tansu gets this.
    """
    if "tansu" in kafka.kind.lower():
        return {"session.timeout.ms": 2000, "heartbeat.interval.ms": 500}
    return {}


class RunningLoop:
    """A :class:`ConsumerLoop` running ``run()`` in a thread; ``stop()`` re-raises its error."""

    def __init__(self, loop: ConsumerLoop[Any]) -> None:
        self.loop = loop
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, name="store-loop-under-test", daemon=True)

    def _main(self) -> None:
        try:
            self.loop.run()
        except BaseException as exc:  # surfaced by stop()
            self.error = exc

    def stop(self, timeout: float = 30.0) -> None:
        self.loop.stop()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "consumer loop did not stop"
        if self.error is not None:
            raise self.error


LoopFactory = Callable[..., ConsumerLoop[Any]]


@pytest.fixture
def loop_factory(kafka: KafkaEndpoint, kafka_settings: KafkaSettings) -> Iterator[LoopFactory]:
    """``loop_factory(sink, topic, group_id=None, **kwargs) -> ConsumerLoop``, closed at teardown."""
    loops: list[ConsumerLoop[Any]] = []

    def make(sink: Sink[Any], topic: str, group_id: str | None = None, **kwargs: Any) -> ConsumerLoop[Any]:
        overrides = {**fast_group_overrides(kafka), **kwargs.pop("consumer_overrides", {})}
        kwargs.setdefault("from_beginning", True)
        kwargs.setdefault("retry_max_s", 0.5)
        loop = ConsumerLoop(
            sink,
            kafka=kafka_settings,
            topic=topic,
            group_id=group_id or f"g-{uuid.uuid4().hex[:8]}",
            consumer_overrides=overrides,
            **kwargs,
        )
        loops.append(loop)
        return loop

    yield make
    for loop in loops:
        loop.close()


RunLoop = Callable[[ConsumerLoop[Any]], RunningLoop]


@pytest.fixture
def run_loop(loop_factory: LoopFactory) -> Iterator[RunLoop]:
    """``run_loop(loop) -> RunningLoop`` (started); stopped at teardown, before the loops close."""
    running: list[RunningLoop] = []

    def start(loop: ConsumerLoop[Any]) -> RunningLoop:
        handle = RunningLoop(loop)
        handle.thread.start()
        running.append(handle)
        return handle

    yield start
    for handle in running:
        if handle.thread.is_alive():
            handle.stop()


@dataclass(frozen=True)
class PricesRig:
    """What a prices-consumer test works with: this test's broker settings, its Redis client and
    key prefix, its topics, and the ``loop_factory`` / ``run_loop`` fixtures as ``loop`` / ``run``."""

    kafka: KafkaSettings
    redis: redis.Redis
    prefix: str
    topic_factory: Callable[..., str]
    loop: LoopFactory
    run: RunLoop

    def topics(self, partitions: int | None = None) -> str:
        """Create the prices topic (``partitions``, default the spec's) and the dead-letter topic;
        returns the prices topic's name."""
        topic = self.topic_factory(PRICES, partitions=partitions)
        self.topic_factory(DEAD_LETTERS)
        return topic

    @property
    def dead_letter_topic(self) -> str:
        name: str = DEAD_LETTERS.with_prefix(self.kafka.topic_prefix).name
        return name

    def sink(self, history_cap: int = 5000) -> PriceSink:
        """A :class:`PriceSink` on this test's Redis keys."""
        return PriceSink(self.redis, key_prefix=self.prefix, history_cap=history_cap)


@pytest.fixture
def rig(
    kafka_settings: KafkaSettings,
    redis_settings: RedisSettings,
    redis_client: redis.Redis,
    topic_factory: Callable[..., str],
    loop_factory: LoopFactory,
    run_loop: RunLoop,
) -> PricesRig:
    return PricesRig(
        kafka_settings, redis_client, redis_settings.key_prefix, topic_factory, loop_factory, run_loop
    )


def redis_state(client: Any, prefix: str) -> dict[bytes, Any]:
    """Every key under ``prefix`` with its full value, for before/after comparisons."""
    state: dict[bytes, Any] = {}
    for key in client.scan_iter(match=prefix + "*", count=1000):
        kind = client.type(key)
        if kind == b"hash":
            state[key] = client.hgetall(key)
        elif kind == b"zset":
            state[key] = client.zrange(key, 0, -1, withscores=True)
        elif kind == b"set":
            state[key] = client.smembers(key)
        elif kind == b"list":
            state[key] = client.lrange(key, 0, -1)
        else:
            state[key] = client.get(key)
    return state
