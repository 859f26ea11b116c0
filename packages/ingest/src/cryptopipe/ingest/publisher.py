"""The Kafka side of ingest: an idempotent producer whose every outcome is counted.

Delivery guarantees, chosen deliberately:

- ``enable.idempotence=true`` + ``acks=all``: broker-side retries never duplicate or reorder a
  symbol's trades (one key, one partition).
- ``message.timeout.ms`` (``INGEST_DELIVERY_TIMEOUT_MS``) defaults to 0 = never time out. While the
  broker is away, trades wait in librdkafka's queue and are delivered when it returns; the only
  thing that limits the wait is memory, bounded by ``queue.buffering.max.messages``
  (``INGEST_BUFFER_MAX_MESSAGES``). When that bound is hit, the *new* trade is refused
  (``BufferError``), counted as lost ``buffer_full`` and logged at ERROR. A finite timeout would
  instead expire buffered trades (and, under idempotence, force an epoch bump) while there is
  still room for them; the operator who prefers that can set one.
- On shutdown the queue is flushed for a bounded time; whatever is left is purged and counted as
  lost ``shutdown``.
- ``partitioner=murmur2_random``: a trade keyed ``BTCUSDT`` goes to the partition the Java client
  picks for that key (murmur2), so Java producers, Kafka Streams and Spark co-partition with us;
  :func:`cryptopipe.schemas.topics.java_partition` predicts it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from cryptopipe.ingest.settings import IngestSettings
from cryptopipe.observability import metrics as m
from cryptopipe.runtime import RateLimitedLog
from cryptopipe.runtime.kafka import login_refused, said_once
from cryptopipe.runtime.logs import rate_limited_logger
from cryptopipe.schemas import DeadLetter, KafkaSettings, Trade, encode, encode_key
from cryptopipe.schemas.topics import PARTITIONER

logger = logging.getLogger(__name__)

_SHUTDOWN_ERRORS = {KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT}

#: A delivery report callback: (error or None, the message).
DeliveryCallback = Callable[[KafkaError | None, Message], None]


@dataclass
class IngestStats:
    """Running totals of one :class:`~cryptopipe.ingest.Ingest` (also exported as metrics)."""

    received: int = 0
    """Trades taken off the stream (live), duplicates included; backfilled ones are apart."""
    published: int = 0
    """Trades the broker acknowledged."""
    lost: int = 0
    """Trades given up, each counted with its reason (``trades_lost{reason}``)."""
    dead_lettered: int = 0
    """Frames that held no valid trade, sent to the dead-letter topic with a reason."""
    backfilled: int = 0
    """Trades recovered from REST to fill a gap in a symbol's ids."""
    unfilled: int = 0
    """Missing trade ids that the backfill could not recover."""
    reconnects: int = 0
    """WebSocket reconnects, for any reason."""
    duplicates: int = 0
    """Trades received again (id at or below the last published one) and dropped."""
    gaps: int = 0
    """Gaps seen in a symbol's trade ids."""
    resumed: int = 0
    """Symbols that took up from their last trade id in the topic at start (see ``ingest.resume``)."""
    book_events: int = 0
    """Diff-depth events taken off the streams; each ends applied, skipped, in a resync gap or buffered."""
    book_events_applied: int = 0
    """Diff events applied to a live book (each published as an ``update`` record)."""
    book_events_skipped: int = 0
    """Diff events already in the book (``u`` at or below its id): skipped as older than the snapshot."""
    book_events_in_resync_gap: int = 0
    """Diff events dropped inside a counted resync (covered by the next snapshot, or before a gap)."""
    book_events_buffered: int = 0
    """Diff events still waiting for a snapshot (at exit: their symbol never got one)."""
    book_resyncs: int = 0
    """Live books discarded (gap, stale snapshot, crossed), each followed by a new ``reset``."""
    book_snapshots_used: int = 0
    """REST depth snapshots a book was built from (one ``reset`` record each)."""
    book_records_published: int = 0
    """Book records (reset, update, checkpoint) the broker acknowledged."""
    book_records_lost: int = 0
    """Book records given up (``book_records_lost{kind,reason}``)."""
    book_ticker_checks: int = 0
    """bookTicker frames compared with the book at the same update id."""
    book_ticker_mismatches: int = 0
    """Of those, the ones whose best bid or ask differed from the book's."""


def producer_config(kafka: KafkaSettings, settings: IngestSettings) -> dict[str, Any]:
    """librdkafka settings of the trade producer (see the module docstring for the choices)."""
    return {
        **kafka.client_config(),
        "client.id": "cryptopipe-ingest",
        "enable.idempotence": True,
        "acks": "all",
        "partitioner": PARTITIONER,
        "linger.ms": settings.linger_ms,
        "compression.type": settings.compression,
        "queue.buffering.max.messages": settings.buffer_max_messages,
        "message.timeout.ms": settings.delivery_timeout_ms,
        "statistics.interval.ms": settings.statistics_interval_ms,
        "logger": said_once(rate_limited_logger("cryptopipe.ingest.librdkafka")),
    }


#: (stage label, librdkafka's window in a broker's statistics; µs).
_LATENCY_WINDOWS = (("queue", "int_latency"), ("outbuf", "outbuf_latency"), ("rtt", "rtt"))


def _symbol_of(key: bytes | str | None) -> str:
    return key.decode("ascii", "replace") if isinstance(key, bytes) else "?"


def loss_reason(error: KafkaError) -> str:
    """A delivery error as a loss reason label (``shutdown`` for records purged at exit)."""
    if error.code() in _SHUTDOWN_ERRORS:
        return "shutdown"
    return str(error.name()).strip("_").lower() or "unknown"


class Publisher:
    """Produces trades and dead letters; counts delivered, lost and buffered trades."""

    def __init__(
        self,
        kafka: KafkaSettings,
        settings: IngestSettings,
        stats: IngestStats,
        *,
        prices_topic: str,
        dead_letter_topic: str,
        producer_factory: Callable[[dict[str, Any]], Producer] = Producer,
    ) -> None:
        self.prices_topic = prices_topic
        self.dead_letter_topic = dead_letter_topic
        self.stats = stats
        self._kafka = kafka
        self._refused = False
        self._log = RateLimitedLog(5.0)
        self._outstanding = 0
        self._published_by_key: dict[bytes, Any] = {}
        config = producer_config(kafka, settings)
        config["error_cb"] = self._on_error
        if settings.statistics_interval_ms > 0:
            config["stats_cb"] = self._on_stats
        self._producer = producer_factory(config)

    @property
    def buffered(self) -> int:
        """Records handed to librdkafka and not yet acknowledged (trades and dead letters)."""
        return len(self._producer)

    @property
    def outstanding_trades(self) -> int:
        """Counted records (trades, and book records when books are on) not yet reported."""
        return self._outstanding

    def publish(self, trade: Trade) -> bool:
        """Hand one trade to the producer; ``False`` (counted, logged) if it had to be dropped."""
        refused = self.produce(
            self.prices_topic, encode(trade), encode_key(trade.symbol), self._on_trade_delivery
        )
        if refused is not None:
            self._lost(refused, trade)
            return False
        return True

    def produce(self, topic: str, value: bytes, key: bytes, on_delivery: DeliveryCallback) -> str | None:
        """Hand one counted record to the producer: None, or why it was refused (a loss reason).

        ``on_delivery`` must call :meth:`settled` first: until then the record is outstanding, and
        :meth:`flush` purges what is still outstanding at shutdown (reported as ``shutdown``).
        """
        for attempt in (1, 2):
            try:
                self._producer.produce(topic, value, key, on_delivery=on_delivery)
            except BufferError:
                if attempt == 1:
                    self._producer.poll(0)
                    continue
                return "buffer_full"
            except KafkaException as exc:
                return loss_reason(exc.args[0])
            self._outstanding += 1
            return None
        return None  # pragma: no cover - the loop always returns

    def settled(self) -> None:
        """One record handed to :meth:`produce` got its delivery report."""
        self._outstanding -= 1

    def dead_letter(self, letter: DeadLetter) -> None:
        """Send a dead letter; failures are counted as errors (the letter is already counted)."""
        try:
            self._producer.produce(
                self.dead_letter_topic, encode(letter), b"ingest", on_delivery=self._on_dead_letter_delivery
            )
        except (BufferError, KafkaException) as exc:
            m.ERRORS.labels(component="ingest", reason="dead_letter_dropped").inc()
            self._warn("dead_letter_dropped", "could not queue a dead letter (%s): %s", letter.reason, exc)

    def poll(self) -> None:
        """Serve delivery reports without blocking; call it often from the event loop."""
        self._producer.poll(0)
        m.PRODUCER_BUFFERED.set(len(self._producer))

    async def poll_forever(self, interval_s: float = 0.01) -> None:
        while True:
            self.poll()
            await asyncio.sleep(interval_s)

    def flush(self, timeout_s: float) -> int:
        """Wait up to ``timeout_s`` for acknowledgements; purge and count the rest. Blocks."""
        self._producer.flush(timeout_s)
        remaining = self._outstanding
        if remaining:
            logger.error(
                "shutdown: %d records still unacknowledged after %.1f s; counted as lost",
                remaining,
                timeout_s,
            )
            self._producer.purge(in_queue=True, in_flight=True)
            self._producer.flush(min(timeout_s, 1.0))
        m.PRODUCER_BUFFERED.set(len(self._producer))
        return remaining

    def close(self) -> None:
        """Release the producer (its threads and connections) now rather than at garbage collection."""
        self._producer = None  # type: ignore[assignment]

    # --- callbacks (run inside poll/flush) -------------------------------------------------
    def _on_trade_delivery(self, error: KafkaError | None, message: Message) -> None:
        # Runs once per trade: the metric child is looked up once per key, not per call.
        self._outstanding -= 1
        key = message.key()
        if error is None:
            self.stats.published += 1
            counter = self._published_by_key.get(key)  # type: ignore[arg-type]
            if counter is None:
                counter = self._published_by_key[key] = m.TRADES_PUBLISHED.labels(  # type: ignore[index]
                    symbol=m.symbol_label(_symbol_of(key))
                )
            counter.inc()
            return
        symbol = _symbol_of(key)
        reason = loss_reason(error)
        self.stats.lost += 1
        m.TRADES_LOST.labels(reason=reason).inc()
        self._error(f"lost:{reason}", "trade of %s lost for good: %s", symbol, error.str())

    def _on_dead_letter_delivery(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            m.ERRORS.labels(component="ingest", reason="dead_letter_lost").inc()
            self._warn("dead_letter_lost", "dead letter not delivered: %s", error.str())

    def _on_stats(self, stats_json: str) -> None:
        """librdkafka's statistics: each broker's latency windows become gauges (see
        ``cryptopipe_kafka_producer_latency_seconds``). A window with no sample leaves its gauges
        as they were; bootstrap and internal brokers (no node id) are skipped."""
        try:
            stats = json.loads(stats_json)
            brokers = stats["brokers"].values()
        except (ValueError, KeyError, AttributeError) as exc:
            m.ERRORS.labels(component="ingest", reason="producer_stats_unreadable").inc()
            self._warn("stats", "unreadable librdkafka statistics: %s", exc)
            return
        for broker in brokers:
            if not isinstance(broker, dict) or broker.get("nodeid", -1) < 0:
                continue
            name = str(broker.get("nodename") or broker.get("name"))
            for stage, key in _LATENCY_WINDOWS:
                window = broker.get(key)
                if not isinstance(window, dict) or not window.get("cnt"):
                    continue
                for quantile in ("p50", "p99", "max"):
                    value = window.get(quantile)
                    if isinstance(value, int | float):
                        gauge = m.PRODUCER_LATENCY.labels(broker=name, stage=stage, quantile=quantile)
                        gauge.set(value / 1e6)

    def _on_error(self, error: KafkaError) -> None:
        refusal = login_refused(error, self._kafka)
        if refusal is not None:  # a rotated password: ingest stops and says so once (cli.main)
            m.ERRORS.labels(component="ingest", reason="kafka_authentication").inc()
            if not self._refused:
                self._refused = True
                raise refusal
            return
        if error.fatal():
            m.ERRORS.labels(component="ingest", reason="producer_fatal").inc()
            logger.error("Kafka producer fatal error: %s", error.str())
            return
        m.ERRORS.labels(component="ingest", reason="kafka_" + loss_reason(error)).inc()
        self._warn(
            "kafka:" + loss_reason(error),
            "Kafka: %s (%d records waiting for the broker)",
            error.str(),
            len(self._producer),
        )

    def _lost(self, reason: str, trade: Trade) -> None:
        self.stats.lost += 1
        m.TRADES_LOST.labels(reason=reason).inc()
        self._error(
            f"lost:{reason}",
            "DROPPING trade %s #%d: %s (producer holds %d records; bound INGEST_BUFFER_MAX_MESSAGES)",
            trade.symbol,
            trade.trade_id,
            reason,
            len(self._producer),
        )

    def _error(self, key: str, message: str, *args: object) -> None:
        self._log.log(logger, logging.ERROR, key, message, *args)

    def _warn(self, key: str, message: str, *args: object) -> None:
        self._log.log(logger, logging.WARNING, key, message, *args)
