"""The express lane: each alert the moment the trade that decides it arrives, beside Spark.

Spark's real-time mode would give millisecond alerts, but it runs no Python stateful operator,
and the lateness rule (a running newest trade time per symbol, in arrival order) needs one (see
the alerting README). So the job runs Spark in micro-batch mode, where an alert comes out a
micro-batch or two after its trade, and this lane runs beside it in the same process:

    prices (Kafka, every partition assigned, no group) -> decode -> SymbolState per symbol
    book-updates (when book rules exist)               -> decode -> BookState per symbol
      -> early and final alerts (same rows, same thresholds as the Spark sink) -> alerts topic

It applies exactly the operators' rules (:class:`~cryptopipe.alerting.plan.SymbolState`,
:class:`~cryptopipe.alerting.book_state.BookState`) to the same records in the same order (a
symbol's records share a partition), so it raises the same alerts, with the same idempotency keys.
The Spark query publishes each of them again, a micro-batch later; the alerts consumer keeps the
first copy and counts the second as stale. Spark stays the record: its state is checkpointed and
its alerts exactly-once in Redis across restarts, and when this lane is stopped, slow or failing,
nothing is missed, only later.

On start the lane seeks each partition back by twice the longest window (or hold) + the delay
(by record timestamp), rebuilds its windows from there, and publishes only what trades at
or after the partitions' end at start decide: alerts from the backlog are Spark's. (A window
can differ from Spark's only when a trade older than that look-back had set the newest trade time,
i.e. a trade time far ahead of its neighbours; then Spark's copy still follows. A book needs its
reset: a symbol whose last reset is older than the look-back waits for its next one, and Spark's
copies of its alerts follow meanwhile.)
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from cryptopipe.alerting.book_state import BookState
from cryptopipe.alerting.errors import SourceUnavailableError
from cryptopipe.alerting.plan import WINDOW_COLUMNS, SymbolState
from cryptopipe.alerting.rules import Rule, book_rules, price_rules
from cryptopipe.alerting.sink import AlertPublisher, Delivery, count_published, windows_to_alerts
from cryptopipe.observability import metrics as m
from cryptopipe.runtime import rate_limited_logger
from cryptopipe.runtime.kafka import LOW_LATENCY_FETCH, poll_batch
from cryptopipe.schemas import Alert, DecodeError, KafkaSettings, decode_book_record, decode_trade

logger = logging.getLogger(__name__)
_T = TypeVar("_T")
_NO_LEADER_YET = (
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
)
_warn = rate_limited_logger(__name__ + ".warnings")


@dataclass(slots=True)
class ExpressStats:
    trades: int = 0
    book_records: int = 0
    alerts_published: int = 0
    dropped_late: int = 0
    invalid: int = 0
    publish_failures: int = 0


def express_consumer_config(kafka: KafkaSettings) -> dict[str, Any]:
    """A group-less reader tuned for latency: a fetch answers as soon as one byte is there."""
    return {
        **kafka.client_config(),
        "group.id": f"cryptopipe-alerting-express-{uuid.uuid4().hex[:8]}",
        "client.id": "cryptopipe-alerting-express",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": False,
        "logger": rate_limited_logger("cryptopipe.alerting.librdkafka"),
        **LOW_LATENCY_FETCH,
    }


class ExpressLane:
    """Reads ``topic`` (trades) and ``book_topic`` (when there are book rules) and publishes alerts
    through ``publisher`` from a thread of its own."""

    def __init__(
        self,
        kafka: KafkaSettings,
        topic: str,
        rules: Sequence[Rule],
        delay_ms: int,
        publisher: AlertPublisher,
        *,
        book_topic: str | None = None,
        batch_size: int = 500,
    ) -> None:
        self.kafka = kafka
        self.topic = topic
        self.rules = tuple(rules)
        self.book_topic = book_topic if book_rules(self.rules) else None
        self.topics = [topic for topic in (topic, self.book_topic) if topic is not None]
        self.by_name: Mapping[str, Rule] = {rule.name: rule for rule in self.rules}
        self.delay_us = delay_ms * 1000
        self.publisher = publisher
        self.batch_size = batch_size
        self.stats = ExpressStats()
        self._symbols: dict[str, SymbolState] = {}
        self._books: dict[str, BookState] = {}
        self._live_from: dict[tuple[str, int], int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._consumer: Consumer | None = None
        kinds = ("final", "early")
        m.prime(m.ALERTING_EXPRESS_ALERTS, *({"rule": r.name, "kind": k} for r in self.rules for k in kinds))
        m.prime(m.ALERTING_EXPRESS_PUBLISH_LATENCY, *({"kind": k} for k in kinds))

    @property
    def lookback_us(self) -> int:
        """How far back the lane rebuilds its windows on start (by record timestamp, µs)."""
        longest = max(max(rule.window_us, rule.hold_us) for rule in self.rules)
        return 2 * longest + self.delay_us

    def start(self, timeout_s: float = 30.0) -> None:
        """Assign every partition and start reading; returns once the lane is live."""
        if self._thread is not None:
            return
        self._consumer = Consumer(express_consumer_config(self.kafka))
        self._assign(self._consumer, timeout_s)
        self._thread = threading.Thread(target=self._run, name="alerting-express", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop reading; the consumer is closed once the thread is out of it (a publish to a broker
        that is gone can hold it for the flush timeout: then it is left to the process's exit)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                logger.warning("express lane still publishing after %.0f s; leaving it to exit", timeout_s)
                return
            self._thread = None
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def handle(self, messages: Sequence[Message]) -> None:
        """Feed one poll's records (in order) and publish the alerts they decide."""
        rows: list[tuple[Any, ...]] = []
        for message in messages:
            error = message.error()
            if error is not None:
                self._on_message_error(error)
                continue
            topic, value = message.topic(), message.value() or b""
            live = (message.offset() or 0) >= self._live_from.get((topic or "", message.partition() or 0), 0)
            rows.extend(self._feed_book(value, live) if topic == self.book_topic else self._feed(value, live))
        if not rows:
            return
        named = (dict(zip(WINDOW_COLUMNS, row, strict=True)) for row in rows)
        alerts = windows_to_alerts(named, self.by_name, None, time.time_ns() // 1000)
        if alerts:
            self._publish(alerts)

    # --- internals --------------------------------------------------------------------------

    def _assign(self, consumer: Consumer, timeout_s: float) -> None:
        since_ms = (time.time_ns() // 1000 - self.lookback_us) // 1000
        assignment = []
        for topic in self.topics:
            metadata = consumer.list_topics(topic, timeout=timeout_s).topics[topic]
            if metadata.error is not None:
                raise SourceUnavailableError(f"express lane cannot read {topic}: {metadata.error}")
            wanted = [TopicPartition(topic, p, since_ms) for p in sorted(metadata.partitions)]
            for start in _retrying(partial(consumer.offsets_for_times, wanted, timeout=timeout_s), timeout_s):
                partition = TopicPartition(topic, start.partition)
                _low, high = _retrying(
                    partial(consumer.get_watermark_offsets, partition, timeout=timeout_s), timeout_s
                )
                self._live_from[(topic, start.partition)] = high
                offset = start.offset if start.offset >= 0 else high
                assignment.append(TopicPartition(topic, start.partition, offset))
        consumer.assign(assignment)
        logger.info(
            "express lane: %s from %s (live from %s), look-back %.0f s",
            ", ".join(self.topics),
            {f"{tp.topic}/{tp.partition}": tp.offset for tp in assignment},
            self._live_from,
            self.lookback_us / 1e6,
        )

    def _run(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        while not self._stop.is_set():
            try:
                # Not consume(n, timeout) alone: it waits for n records or the timeout (measured:
                # consume(500, 0.1) put ~50 ms on every alert at 1,000 trades/s).
                messages = poll_batch(consumer, self.batch_size, 0.1)
                if messages:
                    self.handle(messages)
                self.publisher.poll(0)
            except Exception:  # keep the lane alive: Spark still delivers whatever it misses
                m.ERRORS.labels(component="alerting", reason="express_failed").inc()
                _warn.exception("express lane: a poll failed; Spark's copies of its alerts still follow")
                self._stop.wait(1.0)

    def _feed(self, value: bytes, live: bool) -> list[tuple[Any, ...]]:
        self.stats.trades += 1
        try:
            trade = decode_trade(value)
        except DecodeError:
            self.stats.invalid += 1  # counted and dead-lettered by the prices consumer and Spark
            return []
        state = self._symbols.get(trade.symbol)
        if state is None:
            state = self._symbols[trade.symbol] = SymbolState(
                trade.symbol, price_rules(self.rules), self.delay_us
            )
        rows = state.feed(
            trade.trade_time_us, trade.trade_id, format(trade.price, "f"), trade.receive_time_us
        )
        if rows is None:
            if live:
                self.stats.dropped_late += 1
            return []
        return rows if live else []

    def _feed_book(self, value: bytes, live: bool) -> list[tuple[Any, ...]]:
        self.stats.book_records += 1
        try:
            record = decode_book_record(value)
        except DecodeError:
            self.stats.invalid += 1  # counted and dead-lettered by the books consumer
            return []
        state = self._books.get(record.symbol)
        if state is None:
            state = self._books[record.symbol] = BookState(record.symbol, self.rules, self.delay_us)
        rows = state.take(record)
        if rows is None:
            if live:
                self.stats.dropped_late += 1
            return []
        return rows if live else []

    def _publish(self, alerts: list[Alert]) -> None:
        """Hand the alerts to the producer and go on reading: the next decision never waits for
        this one's acknowledgement (see the README: where early alerts waited)."""
        try:
            self.publisher.send(alerts, self._delivered)
        except (BufferError, KafkaException) as exc:
            self._delivered(Delivery(alerts, [0] * len(alerts), [str(exc)] * len(alerts)))

    def _delivered(self, delivery: Delivery) -> None:
        acked = [(alert, ack) for alert, ack in zip(delivery.alerts, delivery.acked_us, strict=True) if ack]
        if delivery.failures:
            failed = len(delivery.alerts) - len(acked)
            self.stats.publish_failures += failed
            m.ERRORS.labels(component="alerting", reason="express_publish").inc(failed)
            _warn.warning("express lane: %s; Spark's copies follow", delivery.failures[0])
        count_published(
            [alert for alert, _ in acked],
            [ack for _, ack in acked],
            m.ALERTING_EXPRESS_ALERTS,
            m.ALERTING_EXPRESS_PUBLISH_LATENCY,
        )
        self.stats.alerts_published += len(acked)

    def _on_message_error(self, error: KafkaError) -> None:
        # (No partition-EOF events: the consumer is configured without them.)
        m.ERRORS.labels(component="alerting", reason="express_consume").inc()
        _warn.warning("express lane: %s", error.str())


def _retrying(call: Callable[[], _T], timeout_s: float) -> _T:
    """``call()``, again while it fails with a retriable error (a topic just created has no
    leader yet for a moment: NOT_LEADER_FOR_PARTITION), until ``timeout_s`` has passed."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return call()
        except KafkaException as exc:
            if exc.args[0].code() not in _NO_LEADER_YET or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
