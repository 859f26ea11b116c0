"""Real Binance trades through the whole front of the pipeline: the replay exchange (``--clock
original``) -> ingest -> Kafka -> the Spark job; its alerts equal the reference computation on the
very trades that reached the topic."""

from __future__ import annotations

import time
from typing import Any

import pytest

from cryptopipe.alerting.reference import one_per_batch, reference_alerts
from cryptopipe.infra.testing import eventually
from cryptopipe.ingest import IngestSettings
from cryptopipe.ingest.testing import RunningIngest
from cryptopipe.replay.testing import real_data_file
from cryptopipe.schemas import PRICES, KafkaSettings, Trade, decode_trade, settings_of

from .conftest import JobRunner, identity, wait_for_watermark, wait_until_idle

pytestmark = pytest.mark.slow

#: The recording is calm (no 0.5 % minute): thresholds low enough for a dozen alerts of both kinds.
RULES = "1m:0.05%;2m:0.1%:early"


def _prices_topic(job: Any) -> list[Trade]:
    """Every trade the job read, straight from the topic, in ingest (receive) order."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(
        {**job.kafka.client_config(), "group.id": "realdata-check", "enable.auto.commit": False}
    )
    try:
        topic = job.prices_topic
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        trades: list[Trade] = []
        total = job.recorder.rows_read
        deadline = time.monotonic() + 60
        while len(trades) < total and time.monotonic() < deadline:
            for message in consumer.consume(10_000, timeout=1.0):
                if message.error() is None:
                    trades.append(decode_trade(message.value()))
        return sorted(trades, key=lambda t: (t.receive_time_us, t.symbol, t.trade_id))
    finally:
        consumer.close()


def test_real_binance_trades_give_the_reference_alerts(
    jobs: JobRunner, kafka_settings: KafkaSettings, topic_factory: Any, replay_exchange_factory: Any
) -> None:
    files = (str(real_data_file("btcusdt_20240808.gz")), str(real_data_file("ethusdt_20240808.gz")))
    topic_factory(PRICES)
    settings = jobs.settings(RULES)
    job = jobs.start(settings)
    # 20x speed: the five recorded minutes in ~15 s (lateness is per symbol, so the speed and the
    # drift between the two symbols' partitions do not matter).
    exchange = replay_exchange_factory(replay_files=files, speed=20.0, clock="original")
    ingest_settings = settings_of(
        IngestSettings,
        ws_url=exchange.ws_url,
        rest_url=exchange.rest_url,
        symbols="btcusdt,ethusdt",
        mode="trade",
        backoff_initial_s=0.05,
        backoff_max_s=0.5,
        flush_timeout_s=5.0,
    )
    ingest = RunningIngest(ingest_settings, kafka_settings).start()
    try:
        assert exchange.wait_finished(120), "replay did not finish"
        eventually(lambda: ingest.stats.published >= 15_000, timeout=60, message="ingest published")
    finally:
        ingest.stop()
    published = ingest.stats.published
    wait_until_idle(job, published, timeout=120)
    trades = _prices_topic(job)
    assert len(trades) == published
    assert {t.symbol for t in trades} == {"BTCUSDT", "ETHUSDT"}
    wait_for_watermark(job, max(t.trade_time_us for t in trades) - 1_000_000 - 1000)

    expected = reference_alerts(one_per_batch(trades), settings.rules)
    assert expected.dropped == 0
    assert len(expected.alerts) >= 8
    assert {a.kind for a in expected.alerts} == {"final", "early"}
    assert sorted(identity(a) for a in jobs.published) == expected.alerts
    assert job.stats.dropped_late == 0
