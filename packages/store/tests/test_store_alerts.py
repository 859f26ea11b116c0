"""AlertSink: the same ConsumerLoop writes a capped, newest-first alert feed, each alert once."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import redis
from prometheus_client import REGISTRY

from cryptopipe.infra.testing import eventually
from cryptopipe.schemas import (
    ALERTS,
    DEAD_LETTERS,
    Alert,
    AlertKind,
    KafkaSettings,
    RedisSettings,
    encode,
    encode_key,
)
from cryptopipe.store import AlertSink, AlertStore, ConsumerLoop

from .conftest import LoopFactory, RunningLoop, produce

T0 = 1_723_161_000_000_000


def alert(i: int, *, kind: AlertKind = "final", rule: str = "pct-1m", trigger: int | None = None) -> Alert:
    return Alert(
        rule=rule,
        symbol="BTCUSDT" if i % 2 else "ETHUSDT",
        kind=kind,
        side="SELL",
        window_start_us=T0 + i * 60_000_000,
        window_end_us=T0 + (i + 1) * 60_000_000,
        open=Decimal("100"),
        close=Decimal("101.5"),
        pct_change=1.5,
        raised_time_us=T0 + (i + 1) * 60_000_000 + 500_000,
        trigger_receive_time_us=trigger,
    )


def test_each_alert_lands_once_newest_first(redis_client: redis.Redis, redis_settings: RedisSettings) -> None:
    sink = AlertSink(redis_client, key_prefix=redis_settings.key_prefix, feed_cap=4)
    store = AlertStore(redis_client, redis_settings.key_prefix)
    first = sink.write([alert(0), alert(1), alert(1, kind="early")])
    replay = sink.write([alert(1), alert(0), alert(2)])

    assert (first.written, first.stale) == (3, 0)
    assert (replay.written, replay.stale) == (1, 2)
    assert store.recent(10) == [alert(2), alert(1, kind="early"), alert(1), alert(0)]
    sink.write([alert(3), alert(4)])
    assert store.recent(10) == [alert(4), alert(3), alert(2), alert(1, kind="early")]  # capped at 4
    assert store.recent(1) == [alert(4)]
    assert store.recent(0) == []


def test_alert_latency_samples_use_the_trigger_receive_time(
    redis_client: redis.Redis, redis_settings: RedisSettings
) -> None:
    sink = AlertSink(redis_client, key_prefix=redis_settings.key_prefix)

    def observed() -> float:
        value = REGISTRY.get_sample_value("cryptopipe_alert_latency_seconds_count", {"kind": "final"})
        return value or 0.0

    before = observed()
    result = sink.write([alert(0, trigger=T0), alert(1)])
    assert list(result.latencies_us) == [result.written_time_us - T0]
    assert observed() - before == 1
    sink.write([alert(0, trigger=T0)])  # a replay: not written again, not observed again
    assert observed() - before == 1


def test_alerts_consumer_loop_with_replayed_alerts(
    kafka_settings: KafkaSettings,
    redis_settings: RedisSettings,
    redis_client: redis.Redis,
    topic_factory: Callable[..., str],
    loop_factory: LoopFactory,
    run_loop: Callable[[ConsumerLoop[Any]], RunningLoop],
) -> None:
    topic = topic_factory(ALERTS)
    topic_factory(DEAD_LETTERS)
    alerts = [alert(i, rule=f"r{i % 3}") for i in range(30)]
    records = [(encode_key(a.symbol), encode(a)) for a in alerts]
    produce(kafka_settings, topic, records + records[:10] + [(b"BTCUSDT", b"not an alert")])

    loop = loop_factory(AlertSink(redis_client, key_prefix=redis_settings.key_prefix), topic)
    run_loop(loop)

    eventually(lambda: loop.stats.consumed == 41, message="not every alert was consumed")
    assert (loop.stats.written, loop.stats.stale, loop.stats.dead_lettered) == (30, 10, 1)
    feed = AlertStore(redis_client, redis_settings.key_prefix).recent(100)
    assert sorted(a.idempotency_key for a in feed) == sorted(a.idempotency_key for a in alerts)
