"""Helpers for the alerting tests: one SparkSession for all, trades straight into Kafka, jobs, Redis.

Spark is the expensive part (a JVM, Python workers), so every test shares one ``local[2]``
session and runs its own streaming query on its own topics (``kafka_settings`` gives each test a
unique topic prefix) with its own checkpoint.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from cryptopipe.alerting.job import AlertingJob
from cryptopipe.alerting.plan import OBSERVATION
from cryptopipe.alerting.reference import WindowAlert
from cryptopipe.alerting.rules import Rule, parse_rules
from cryptopipe.alerting.settings import AlertingSettings
from cryptopipe.infra import KafkaEndpoint
from cryptopipe.infra.testing import eventually, produce
from cryptopipe.replay.testing import replay_exchange_factory  # noqa: F401 - fixture
from cryptopipe.schemas import (
    ALERTS,
    PRICES,
    Alert,
    BookRecord,
    BookResetRecord,
    BookUpdateRecord,
    KafkaSettings,
    RedisSettings,
    Trade,
    decode_alert,
    encode,
    encode_key,
    settings_of,
)
from cryptopipe.store import AlertSink, AlertStore, ConsumerLoop

#: An hour boundary, so that 1-minute and 5-minute windows both start here.
BASE_US = 1_723_161_600_000_000
MINUTE_US = 60_000_000


def closers(symbols: Iterable[str], time_us: int, price: str = "1") -> list[Trade]:
    """One trade per symbol at ``time_us``: closes every window of theirs that ends by then - delay."""
    return [trade(symbol, 10**9, price, time_us) for symbol in sorted(set(symbols))]


def trade(symbol: str, trade_id: int, price: str, time_us: int, receive_us: int | None = None) -> Trade:
    return Trade(
        symbol=symbol,
        trade_id=trade_id,
        price=Decimal(price),
        quantity=Decimal("0.1"),
        buyer_is_maker=False,
        trade_time_us=time_us,
        event_time_us=time_us,
        receive_time_us=receive_us if receive_us is not None else time.time_ns() // 1000,
        kind="trade",
    )


def produce_trades(kafka: KafkaSettings, trades: Iterable[Trade], *, linger_ms: int = 5) -> int:
    """Produce to the prices topic, batched (so Tansu sees multi-record batches); waits for acks."""
    topic = PRICES.with_prefix(kafka.topic_prefix).name
    records = ((encode_key(t.symbol), encode(t)) for t in trades)
    return produce(kafka, topic, records, **{"linger.ms": linger_ms, "enable.idempotence": True})


def read_alerts(kafka: KafkaSettings, timeout: float = 5.0) -> list[Alert]:
    """Every record on the alerts topic so far (duplicates included)."""
    topic = ALERTS.with_prefix(kafka.topic_prefix).name
    consumer = Consumer(
        {**kafka.client_config(), "group.id": f"read-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False}
    )
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        partitions = [TopicPartition(topic, p, OFFSET_BEGINNING) for p in metadata.partitions]
        ends = {}
        for tp in partitions:
            _low, high = consumer.get_watermark_offsets(tp, timeout=10)
            ends[tp.partition] = high
        consumer.assign(partitions)
        alerts: list[Alert] = []
        # Alerts are produced one record per batch-slot, so Tansu's high watermark is exact enough
        # here only as a lower bound: read until idle for a moment as well.
        seen: dict[int, int] = {}
        deadline = time.monotonic() + timeout
        idle_since = time.monotonic()
        while time.monotonic() < deadline:
            messages = consumer.consume(500, timeout=0.2)
            if not messages:
                if (
                    all(seen.get(p, 0) >= end for p, end in ends.items())
                    and time.monotonic() - idle_since > 0.5
                ):
                    break
                continue
            idle_since = time.monotonic()
            for message in messages:
                if message.error() is None:
                    seen[message.partition()] = message.offset() + 1
                    alerts.append(decode_alert(message.value()))
        return alerts
    finally:
        consumer.close()


def exported(metric: Any, **labels: str) -> float | None:
    """A series' value in this process's registry, or None when nobody set it (unlike
    ``metric.labels(...)``, which would create it at 0)."""
    for family in metric.collect():
        for sample in family.samples:
            if sample.labels == labels:
                return float(sample.value)
    return None


def identity(alert: Alert) -> WindowAlert:
    """The comparable part of an alert (no timing fields): its values of WindowAlert's fields."""
    return WindowAlert(**{f.name: getattr(alert, f.name) for f in dataclasses.fields(WindowAlert)})


@pytest.fixture(scope="session")
def spark(kafka: KafkaEndpoint) -> Iterator[Any]:
    """One ``local[2]`` session for every test (stopped before the session's broker)."""
    from cryptopipe.alerting.spark import build_session

    session = build_session(settings_of(AlertingSettings, master="local[2]", shuffle_partitions=2))
    yield session
    session.stop()


class JobRunner:
    """Starts AlertingJobs on the shared session; collects what they publish; stops them all."""

    def __init__(self, spark: Any, kafka: KafkaSettings, checkpoint_root: Path) -> None:
        self.spark = spark
        self.kafka = kafka
        self.checkpoint_root = checkpoint_root
        self.jobs: list[AlertingJob] = []
        self.published: list[Alert] = []
        self._lock = threading.Lock()

    def settings(self, rules: str | Sequence[Rule] = "1m:0.5%", **overrides: Any) -> AlertingSettings:
        parsed = parse_rules(rules) if isinstance(rules, str) else tuple(rules)
        values: dict[str, Any] = {
            "rules": parsed,
            "master": "local[2]",
            "checkpoint_dir": self.checkpoint_root,
            "source": "python",
            "shuffle_partitions": 2,
            # These tests are about the Spark query (the record); the express lane has its own.
            "express": False,
        }
        values.update(overrides)
        return settings_of(AlertingSettings, **values)

    def start(self, settings: AlertingSettings, **kwargs: Any) -> AlertingJob:
        def collect(alerts: Sequence[Alert], _acked: Sequence[int]) -> None:
            with self._lock:
                self.published.extend(alerts)

        kwargs.setdefault("on_alerts", collect)
        job = AlertingJob(settings, self.kafka, spark=self.spark, **kwargs)
        self.jobs.append(job)
        job.start()
        return job

    def close(self) -> None:
        for job in self.jobs:
            job.close()


@pytest.fixture
def jobs(spark: Any, kafka_settings: KafkaSettings, tmp_path: Path) -> Iterator[JobRunner]:
    runner = JobRunner(spark, kafka_settings, tmp_path / "checkpoints")
    yield runner
    runner.close()


def wait_for_watermark(job: AlertingJob, at_least_us: int, timeout: float = 60.0) -> int:
    """Wait until the query read a trade at ``at_least_us`` + the delay or later (the event time
    that closes windows ending by ``at_least_us`` for that trade's symbol); re-raise its error."""
    delay_us = job.settings.watermark_delay_ms * 1000

    def reached() -> int | None:
        assert not job.await_termination(0.001), "query stopped"
        for progress in reversed(job.recorder.progress):
            observed = progress.observedMetrics.get(OBSERVATION)
            newest = observed["max_trade_time_us"] if observed is not None else None
            if newest is not None and newest - delay_us >= at_least_us:
                return int(newest - delay_us)
        return None

    return int(eventually(reached, timeout=timeout, message=f"no trade at {at_least_us} + delay was read"))


def wait_until_idle(job: AlertingJob, produced: int, timeout: float = 60.0) -> None:
    """Wait until the query has read ``produced`` rows in total and has nothing left to do."""

    def idle() -> bool:
        assert not job.await_termination(0.001), "query stopped"
        total = job.recorder.rows_read
        if total < produced:
            return False
        assert job.query is not None
        status = job.query.status
        return not status["isTriggerActive"] and not status["isDataAvailable"]

    eventually(idle, timeout=timeout, message=f"query never read {produced} rows and went idle")


class AlertsConsumer:
    """The store's alerts consumer loop (Kafka alerts -> Redis) in a thread."""

    def __init__(
        self, kafka_endpoint: KafkaEndpoint, kafka: KafkaSettings, redis_settings: RedisSettings, client: Any
    ) -> None:
        overrides: dict[str, Any] = {}
        if "tansu" in kafka_endpoint.kind.lower():
            overrides = {"session.timeout.ms": 2000, "heartbeat.interval.ms": 500}
        self.store = AlertStore(client, key_prefix=redis_settings.key_prefix)
        self.loop = ConsumerLoop(
            AlertSink(client, key_prefix=redis_settings.key_prefix),
            kafka=kafka,
            topic=ALERTS.with_prefix(kafka.topic_prefix).name,
            group_id=f"alerts-{uuid.uuid4().hex[:8]}",
            from_beginning=True,
            consumer_overrides=overrides,
        )
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, name="alerts-consumer", daemon=True)
        self.thread.start()

    def _main(self) -> None:
        try:
            self.loop.run()
        except BaseException as exc:
            self.error = exc

    def feed(self) -> list[Alert]:
        if self.error is not None:
            raise self.error
        return self.store.recent(10_000)

    def stop(self) -> None:
        self.loop.stop()
        self.thread.join(30)
        if self.error is not None:
            raise self.error


@pytest.fixture
def alerts_consumer(
    kafka: KafkaEndpoint,
    kafka_settings: KafkaSettings,
    redis_settings: RedisSettings,
    redis_client: Any,
    topic_factory: Callable[..., str],
) -> Iterator[AlertsConsumer]:
    topic_factory(ALERTS)
    consumer = AlertsConsumer(kafka, kafka_settings, redis_settings, redis_client)
    yield consumer
    consumer.stop()


class FakeGroupState:
    """GroupState as ``applyInPandasWithState`` hands it to the function (no timeouts)."""

    def __init__(self, value: tuple[Any, ...] | None) -> None:
        self.value = value

    @property
    def exists(self) -> bool:
        return self.value is not None

    @property
    def get(self) -> tuple[Any, ...]:
        assert self.value is not None
        return self.value

    def update(self, value: tuple[Any, ...]) -> None:
        self.value = value


def drive_operator(
    function: Callable[..., Iterator[Any]],
    batches: Sequence[Sequence[Any]],
    row_of: Callable[[Any], dict[str, Any]],
    rules: Sequence[Rule],
) -> list[WindowAlert]:
    """Spark's loop over a stateful operator, without Spark: per micro-batch, one call per symbol
    with its rows (``row_of(item)`` plus Kafka partition and offset) in shuffled order, as a
    shuffle hands them; the state kept between calls. Returns the alerts the sink makes of it."""
    import random

    import pandas as pd

    from cryptopipe.alerting.sink import windows_to_alerts

    states: dict[str, FakeGroupState] = {}
    rows: list[dict[str, Any]] = []
    offset = 0
    shuffle = random.Random(len(batches))
    for batch in batches:
        groups: dict[str, list[dict[str, Any]]] = {}
        for item in batch:
            groups.setdefault(item.symbol, []).append(
                {**row_of(item), "kafka_partition": 0, "kafka_offset": offset}
            )
            offset += 1
        for symbol, members in groups.items():
            shuffle.shuffle(members)  # a shuffle does not keep Kafka's order; the offsets do
            state = states.setdefault(symbol, FakeGroupState(None))
            out = list(function((symbol,), iter([pd.DataFrame(members)]), state))
            rows.extend(r for frame in out for r in frame.to_dict("records"))
    return as_window_alerts(windows_to_alerts(rows, {r.name: r for r in rules}, None, 0))


def as_window_alerts(alerts: Iterable[Alert]) -> list[WindowAlert]:
    """Alerts without their timing fields, sorted: comparable with the reference's."""
    return sorted(
        WindowAlert(
            a.rule,
            a.symbol,
            a.window_start_us,
            a.kind,
            a.window_end_us,
            a.side,
            a.open,
            a.close,
            a.pct_change,
        )
        for a in alerts
    )


def book_update(
    symbol: str, u: int, time_us: int, bids: Any = (), asks: Any = (), epoch: int = 1
) -> BookUpdateRecord:
    """One contiguous diff (``U == u``) of ``symbol``'s book; levels as (price, qty) strings."""
    return BookUpdateRecord(
        symbol=symbol,
        epoch=epoch,
        first_update_id=u,
        final_update_id=u,
        bids=tuple((Decimal(p), Decimal(q)) for p, q in bids),
        asks=tuple((Decimal(p), Decimal(q)) for p, q in asks),
        event_time_us=time_us,
        receive_time_us=time_us + 2_000,
    )


def book_reset(symbol: str, u: int, epoch: int, bid: str, ask: str) -> BookResetRecord:
    """A reset to a one-level-a-side book (bid and ask of quantity 1)."""
    return BookResetRecord(
        symbol=symbol,
        epoch=epoch,
        reason="initial",
        update_id=u,
        bids=((Decimal(bid), Decimal(1)),),
        asks=((Decimal(ask), Decimal(1)),),
        event_time_us=None,
        receive_time_us=BASE_US,
    )


def book_market() -> list[BookRecord]:
    """BTCUSDT's book: the spread widens to 7 bps at 1 s and holds (a ``spread>5bps:10s`` alert at
    11 s); the mid then rises 0.6 % (early mid alerts above 0.5 %); ETHUSDT's book stays quiet."""
    return [
        book_reset("BTCUSDT", 10, 1, "99.99", "100.01"),
        book_reset("ETHUSDT", 10, 1, "9.99", "10.01"),
        book_update("BTCUSDT", 11, BASE_US + 1_000_000, asks=[("100.01", "0"), ("100.06", "1")]),
        book_update("BTCUSDT", 12, BASE_US + 11_000_000, bids=[("99.98", "2")]),
        book_update("ETHUSDT", 11, BASE_US + 11_000_000, bids=[("9.98", "2")]),
        book_update(
            "BTCUSDT",
            13,
            BASE_US + 20_000_000,
            bids=[("100.59", "1")],
            asks=[("100.06", "0"), ("100.61", "1")],
        ),
    ]
