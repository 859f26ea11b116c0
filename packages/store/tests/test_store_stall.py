"""Stalled consumers (records waiting, none written) are detected, counted and recovered from.

Real broker, real Redis. Progress is blocked on purpose: by pausing the consumer's partitions
(like Tansu's tail stall: fetches bring nothing while records wait) or by a sink whose Redis
writes fail. No timing is asserted; the stall timeout is short so the tests run quickly.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
from prometheus_client import REGISTRY

from cryptopipe.infra.testing import eventually
from cryptopipe.schemas import KafkaSettings, RedisSettings, Trade
from cryptopipe.store import ConsumerLoop, PriceSink, PriceStore, WriteResult

from .conftest import PricesRig, produce_trades, recorded_trades

STALL_TIMEOUT_S = 1.0


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, {"consumer": "prices", **labels}) or 0.0


def since_progress() -> float:
    return sample("cryptopipe_consumer_seconds_since_progress")


def counts() -> dict[str, float]:
    return {
        "stalls": sample("cryptopipe_consumer_stalls_total"),
        "seek": sample("cryptopipe_consumer_stall_recoveries_total", action="seek"),
        "recreate": sample("cryptopipe_consumer_stall_recoveries_total", action="recreate"),
    }


def increase(before: dict[str, float]) -> dict[str, float]:
    return {name: value - before[name] for name, value in counts().items()}


def caught_up(loop: ConsumerLoop[Any]) -> bool:
    lag = loop.lag()
    return bool(lag) and sum(lag.values()) == 0


def drive(loop: ConsumerLoop[Any], condition: Callable[[], bool], message: str, timeout: float = 60) -> None:
    """Run the loop step by step in this thread until ``condition()`` holds."""

    def step() -> bool:
        loop.run_once(0.1)
        return condition()

    eventually(step, timeout=timeout, interval=0.0, message=message)


def written_ids(client: redis.Redis, prefix: str) -> set[int]:
    store = PriceStore(client, prefix)
    return {int(h["trade_id"]) for symbol in store.symbols() for h in store.history(symbol, limit=100_000)}


def test_a_consumer_that_stops_receiving_is_detected_and_recreated(rig: PricesRig) -> None:
    topic = rig.topics(partitions=1)
    trades = recorded_trades(400)
    loop = rig.loop(rig.sink(), topic, stall_timeout_s=STALL_TIMEOUT_S)
    before = counts()

    produce_trades(rig.kafka, topic, trades[:200])
    drive(loop, lambda: loop.stats.written == 200 and caught_up(loop), "the first half was not written")
    assert not loop.stalled
    assert since_progress() == 0

    # The consumer stops receiving (as on Tansu's tail stall) while records keep arriving.
    consumer = loop._group.consumer
    consumer.pause(consumer.assignment())
    produce_trades(rig.kafka, topic, trades[200:])

    drive(loop, lambda: since_progress() > 0, "records waited, but the gauge stayed at 0")
    drive(loop, lambda: increase(before)["stalls"] == 1, "the stall was never detected")
    assert loop.stalled
    assert since_progress() >= STALL_TIMEOUT_S
    assert loop.stats.written == 200
    assert increase(before)["seek"] == 1  # first step: back to the last written offset (paused: no help)

    drive(loop, lambda: loop.stats.written == 400, "the second half was not written after recovery")
    assert increase(before)["recreate"] >= 1  # a new consumer is not paused: it reads on
    drive(loop, lambda: caught_up(loop), "lag did not return to 0")
    assert not loop.stalled
    assert since_progress() == 0
    assert increase(before)["stalls"] == 1  # one stall, however many recovery steps it took
    assert written_ids(rig.redis, rig.prefix) == {t.trade_id for t in trades}


class SwitchableRedis:
    """A PriceSink whose Redis writes fail while ``down`` is set (like an outage)."""

    name = "prices"

    def __init__(self, inner: PriceSink) -> None:
        self.inner = inner
        self.down = threading.Event()

    def decode(self, value: bytes) -> Trade:
        return self.inner.decode(value)

    def write(self, batch: list[Trade]) -> WriteResult:
        if self.down.is_set():
            raise redis.ConnectionError("Redis is down (simulated)")
        return self.inner.write(batch)


def test_failing_redis_writes_are_a_stall_but_the_consumer_is_left_alone(rig: PricesRig) -> None:
    topic = rig.topics(partitions=1)
    trades = recorded_trades(400)
    sink = SwitchableRedis(rig.sink())
    loop = rig.loop(sink, topic, stall_timeout_s=STALL_TIMEOUT_S, retry_initial_s=0.02)
    before = counts()
    rig.run(loop)

    produce_trades(rig.kafka, topic, trades[:200])
    eventually(lambda: loop.stats.written == 200 and caught_up(loop), message="first half not written")

    sink.down.set()
    produce_trades(rig.kafka, topic, trades[200:])
    eventually(lambda: since_progress() > 0, message="records waited, but the gauge stayed at 0")
    eventually(lambda: loop.stalled and increase(before)["stalls"] == 1, message="stall not detected")
    assert loop.stats.written == 200

    sink.down.clear()
    eventually(lambda: loop.stats.written == 400, message="the backlog was not written after Redis returned")
    eventually(lambda: caught_up(loop) and not loop.stalled, message="still stalled after catching up")
    assert since_progress() == 0
    # The cause was Redis: the write retries recovered; the Kafka consumer was not touched.
    assert increase(before) == {"stalls": 1, "seek": 0, "recreate": 0}
    assert written_ids(rig.redis, rig.prefix) == {t.trade_id for t in trades}


def test_an_idle_consumer_with_nothing_to_read_is_not_stalled(rig: PricesRig) -> None:
    topic = rig.topics(partitions=1)
    trades = recorded_trades(100)
    loop = rig.loop(rig.sink(), topic, stall_timeout_s=STALL_TIMEOUT_S)
    before = counts()
    produce_trades(rig.kafka, topic, trades)
    drive(loop, lambda: loop.stats.written == 100 and caught_up(loop), "trades not written")

    # Idle (lag 0) for several stall timeouts: nothing waits, so nothing is stalled.
    idle_until = time.monotonic() + 3 * STALL_TIMEOUT_S
    while time.monotonic() < idle_until:
        loop.run_once(0.1)
        assert caught_up(loop)
        assert since_progress() == 0
        assert not loop.stalled
    assert increase(before) == {"stalls": 0, "seek": 0, "recreate": 0}


def test_stall_timeout_must_be_positive(
    kafka_settings: KafkaSettings, redis_settings: RedisSettings, redis_client: redis.Redis
) -> None:
    sink = PriceSink(redis_client, key_prefix=redis_settings.key_prefix)
    with pytest.raises(ValueError, match="stall_timeout_s"):
        ConsumerLoop(sink, kafka=kafka_settings, topic="t", group_id="g", stall_timeout_s=0)
