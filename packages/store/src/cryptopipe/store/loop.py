"""One consumer loop, Kafka -> Redis, parameterised by a :class:`~cryptopipe.store.sink.Sink`.

Delivery: at least once. Offsets are committed only after the sink's Redis write returned, and
every sink write is idempotent, so a crash, a rebalance or a replay never loses a record and
never changes Redis twice: effectively once.

Commits go out asynchronously at most every ``commit_interval_s`` (200 ms), and synchronously on
revoke and close; a crash replays at most that much, idempotently. Committing after every batch
(once measured at 250 commits/s at 2,000 msg/s) queued the group's heartbeats behind the offset
commits on Apache Kafka 4.1, whose group coordinator handles one connection's requests in order
and batches its log appends: the session timed out, the consumer rejoined, and latency p99 went
to 16-24 s.

Batching: block until the first record arrives (``poll``), then take whatever else is already
fetched, up to ``batch_size`` (``consume(timeout=0)``). A batch therefore never waits for more
records: latency stays one Redis round trip at low rates, and batches grow by themselves under
load. (``consume(n, timeout)`` alone waits the whole timeout whenever fewer than ``n`` records
are queued: at 200 msg/s that measured p50 56 ms against 4 ms for poll-then-drain.)

Failure handling:

- A record that does not decode is counted (``DEAD_LETTERS``, ``ERRORS``), logged with a sample
  (rate-limited), forwarded to the dead-letter topic and skipped.
- Redis unavailable: the same batch is retried with capped, jittered exponential backoff and no
  commit, so nothing is lost; each failed attempt is counted in ``ERRORS``.

Lag: ``end - position`` per partition, where position is the offset after the last record
written to Redis and end is the largest of: the high watermark carried by fetch responses
(free, local), the broker's ListOffsets answer (refreshed at most every ``watermark_refresh_s``)
and the highest offset fetched + 1. Taking the maximum keeps lag right on Tansu, whose
ListOffsets returns the last record *batch*'s base offset + 1.

Stalls: a partition is stalled when records wait on it (lag > 0) and none has been written for
``stall_timeout_s``; being idle at lag 0 is never a stall. ``cryptopipe_consumer_seconds_since_progress``
(worst partition, computed when scraped) and :attr:`ConsumerLoop.stalled` say so, and each stall is
counted once. The loop then recovers by itself where the cause allows it: first it seeks the
stalled partitions back to their last written offset; if nothing moves ``stall_timeout_s`` later,
it commits what was written, closes the librdkafka consumer, creates a new one and subscribes
again (repeated with doubling intervals up to a minute while still stalled). That last step is
the one that helps on Tansu, where a consumer at the tail stops receiving records after some
thousands of single-record batches while a new consumer still reads the partition. While Redis
writes fail, the stall is detected and counted but nothing is recreated: the cause is Redis,
and the write retries already handle it.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

import redis
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]

from cryptopipe.observability import metrics as m
from cryptopipe.runtime import RateLimitedLog, rate_limited_logger
from cryptopipe.runtime.kafka import LOW_LATENCY_FETCH, poll_batch
from cryptopipe.schemas import DEAD_LETTERS, DeadLetter, DecodeError, KafkaSettings, encode
from cryptopipe.store.errors import ConsumerFatalError
from cryptopipe.store.sink import Sink, WriteResult

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_BATCH_SIZE = 500
DEFAULT_COMMIT_INTERVAL_S = 0.2
_UNKNOWN = -1001  # librdkafka's OFFSET_INVALID
_THROUGHPUT_WINDOW_S = 5.0
#: Records waiting and none written for this long: stalled (and the first recovery step runs).
DEFAULT_STALL_TIMEOUT_S = 5.0
#: Longest interval between two consumer recreations while a stall goes on.
_RECREATE_INTERVAL_MAX_S = 60.0


def consumer_config(
    settings: KafkaSettings, group_id: str, *, from_beginning: bool, client_id: str
) -> dict[str, Any]:
    """librdkafka consumer settings chosen for low latency (measurements in the comments)."""
    return {
        **settings.client_config(),
        "group.id": group_id,
        "client.id": client_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest" if from_beginning else "latest",
        **LOW_LATENCY_FETCH,
        # Apache Kafka's smallest allowed session timeout (group.min.session.timeout.ms): a
        # crashed consumer's partitions move within 6 s. Tansu also holds the first JoinGroup
        # for half the session timeout, so this is a 3 s start there instead of 23 s.
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 1000,
    }


@dataclass(frozen=True, slots=True)
class LoopStats:
    """Counts since the loop started. ``consumed`` includes dead-lettered records."""

    consumed: int = 0
    """Records fetched and handled, dead-lettered ones included."""
    written: int = 0
    """Records written to Redis."""
    stale: int = 0
    """Records older than what Redis already holds for their key: not written (idempotent)."""
    dead_lettered: int = 0
    """Records that did not decode, sent to the dead-letter topic."""
    batches: int = 0
    """Batches written to Redis."""
    redis_failures: int = 0
    """Redis writes that failed; the batch is retried, and its offsets are committed once it is written."""


@dataclass(slots=True)
class _PartitionState:
    position: int | None = None  # offset after the last record written to Redis
    fetched_end: int = _UNKNOWN  # highest offset fetched + 1
    listed_end: int = _UNKNOWN  # ListOffsets high watermark (wrong on Tansu, right elsewhere)
    listed_low: int = _UNKNOWN
    committed: int | None = None  # broker's committed offset at assignment; None = unknown
    has_commit: bool | None = None  # None = not asked yet
    sent_commit: int | None = None  # last position sent in a commit request
    # Monotonic time of the last progress: a batch written, or lag seen at 0 (nothing to wait for).
    progress_at: float = field(default_factory=time.monotonic)


@dataclass(slots=True)
class _Stall:
    """One stall, from detection until records are written again (or nothing waits any more)."""

    since: float  # monotonic time of the last progress before it
    seeked: bool = False
    recreated: int = 0
    next_action_at: float = 0.0


class ConsumerLoop(Generic[T]):
    """Consumes ``topic`` in ``group_id`` and writes each batch through ``sink``.

    Run it with :meth:`run` (until :meth:`stop`, callable from any thread or a signal
    handler), or drive it step by step with :meth:`run_once`. ``latency_sink`` receives, for
    every written batch and trade by trade, the system latency, the E2E latency and the
    fetch-to-written part (µs; the last is the same for a whole batch: from the moment the poll
    returned it to Redis' answer), for exact benchmark percentiles split by stage.
    ``stall_timeout_s``: records waiting and none written for this long is a stall (see the
    module docstring for how the loop recovers from one).
    """

    def __init__(
        self,
        sink: Sink[T],
        *,
        kafka: KafkaSettings,
        topic: str,
        group_id: str,
        batch_size: int = DEFAULT_BATCH_SIZE,
        from_beginning: bool = False,
        dead_letter_topic: str | None = None,
        latency_sink: Callable[[list[int], list[int], list[int]], None] | None = None,
        poll_timeout_s: float = 0.2,
        retry_initial_s: float = 0.05,
        retry_max_s: float = 5.0,
        watermark_refresh_s: float = 1.0,
        consumer_overrides: Mapping[str, Any] | None = None,
        stall_timeout_s: float = DEFAULT_STALL_TIMEOUT_S,
        commit_interval_s: float = DEFAULT_COMMIT_INTERVAL_S,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not stall_timeout_s > 0:
            raise ValueError(f"stall_timeout_s must be > 0, got {stall_timeout_s}")
        self.sink = sink
        self.commit_interval_s = commit_interval_s
        self._last_commit_at = 0.0
        self.topic = topic
        self.group_id = group_id
        self.batch_size = batch_size
        self.from_beginning = from_beginning
        self.dead_letter_topic = dead_letter_topic or DEAD_LETTERS.with_prefix(kafka.topic_prefix).name
        self.latency_sink = latency_sink
        self.poll_timeout_s = poll_timeout_s
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.watermark_refresh_s = watermark_refresh_s
        self.stall_timeout_s = stall_timeout_s
        self.component = f"{sink.name}-consumer"
        self._kafka = kafka
        self._stop = threading.Event()
        self._log = RateLimitedLog(10.0)
        self._stats = LoopStats()
        self._partitions: dict[int, _PartitionState] = {}
        self._lag: dict[int, int] = {}
        self._last_refresh = 0.0
        self._throughput: deque[tuple[float, int]] = deque()
        self._throughput_sum = 0
        self._producer: Producer | None = None
        self._admin = AdminClient(
            {
                **kafka.client_config(),
                "client.id": f"{self.component}-offsets",
                "logger": rate_limited_logger("cryptopipe.store.librdkafka"),
            }
        )
        self._pending_offsets: dict[TopicPartition, Future[Any]] | None = None
        self._pending_low: dict[TopicPartition, Future[Any]] | None = None
        self._dead_letter_failures = 0
        self._subscribed = False
        self._closed = False
        # Oldest progress time of the partitions with records waiting; None: nothing waits.
        self._waiting_since: float | None = None
        self._stall: _Stall | None = None
        # After recreating the consumer, until the new one knows its lag: keep the stall's clock.
        self._rejoining = False

        self._consumer_config = self._config(consumer_overrides)
        self._consumer = Consumer(self._consumer_config)
        self._bind_metrics()

    def _config(self, overrides: Mapping[str, Any] | None) -> dict[str, Any]:
        """The Kafka consumer's settings: the group's, this loop's callbacks, then ``overrides``."""
        config = consumer_config(
            self._kafka, self.group_id, from_beginning=self.from_beginning, client_id=self.component
        )
        config.update(
            {
                "on_commit": self._on_commit,
                "error_cb": self._on_error,
                "logger": rate_limited_logger("cryptopipe.store.librdkafka"),
            }
        )
        config.update(overrides or {})
        return config

    def _bind_metrics(self) -> None:
        name = self.sink.name
        self._consumed = m.CONSUMED.labels(consumer=name, topic=self.topic)
        self._batch_seconds = m.CONSUMER_BATCH.labels(consumer=name)
        self._batch_size = m.CONSUMER_BATCH_SIZE.labels(consumer=name)
        self._throughput_gauge = m.CONSUMER_THROUGHPUT.labels(consumer=name)
        self._redis_write = m.REDIS_WRITE.labels(consumer=name)
        self._stalls = m.CONSUMER_STALLS.labels(consumer=name)
        # Computed at scrape time, so the gauge keeps growing even while the loop thread hangs
        # (e.g. in a Redis write). A weak reference: the registry must not keep closed loops alive.
        this = weakref.ref(self)
        m.CONSUMER_SECONDS_SINCE_PROGRESS.labels(consumer=name).set_function(
            lambda: loop.seconds_since_progress() if (loop := this()) is not None else 0.0
        )

    # --- public -----------------------------------------------------------------------------

    @property
    def stats(self) -> LoopStats:
        return self._stats

    def lag(self) -> dict[int, int]:
        """Records not yet written to Redis, per assigned partition (as of the last refresh)."""
        return dict(self._lag)

    def seconds_since_progress(self, now: float | None = None) -> float:
        """How long records have waited without any being written (worst partition); 0 if none wait."""
        since = self._waiting_since
        if since is None or self._closed:
            return 0.0
        return max(0.0, (time.monotonic() if now is None else now) - since)

    @property
    def stalled(self) -> bool:
        """Records wait (lag > 0) and none has been written for ``stall_timeout_s`` or longer."""
        return self.seconds_since_progress() >= self.stall_timeout_s

    def stop(self) -> None:
        """Ask :meth:`run` to finish the current batch, commit and return. Thread/signal safe."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> LoopStats:
        """Consume until :meth:`stop`; then commit what was written and close."""
        # Series for events that may never happen in a run read 0 rather than "no data".
        m.prime(m.DEAD_LETTERS, {"component": self.component, "reason": "malformed_json"})
        m.prime(
            m.ERRORS,
            *({"component": self.component, "reason": r} for r in ("commit_failed", "redis_connectionerror")),
        )
        m.prime(
            m.CONSUMER_STALL_RECOVERIES,
            *({"consumer": self.sink.name, "action": a} for a in ("seek", "recreate")),
        )
        logger.info(
            "%s consuming %s as group %s (batch size %d)",
            self.component,
            self.topic,
            self.group_id,
            self.batch_size,
        )
        try:
            while not self._stop.is_set():
                self.run_once()
        finally:
            self.close()
        logger.info("%s stopped: %s", self.component, self._stats)
        return self._stats

    def run_once(self, timeout_s: float | None = None) -> int:
        """Consume and write at most one batch; returns the number of records taken from Kafka."""
        self._subscribe()
        messages = poll_batch(
            self._consumer, self.batch_size, self.poll_timeout_s if timeout_s is None else timeout_s
        )
        if not messages:
            now = time.monotonic()
            self._maybe_commit(now)
            self._refresh_and_watch(now, [])
            return 0
        fetched_us = time.time_ns() // 1000
        started = time.perf_counter()
        records: list[T] = []
        offsets: dict[int, int] = {}
        dead = consumed = 0
        for msg in messages:
            error = msg.error()
            if error is not None:
                self._on_message_error(error)
                continue
            partition, offset = msg.partition(), msg.offset()
            assert partition is not None
            assert offset is not None
            offsets[partition] = offset + 1
            consumed += 1
            value = msg.value()
            try:
                if value is None:
                    raise DecodeError("empty_value", "record has no value (tombstone)")
                records.append(self.sink.decode(value))
            except DecodeError as exc:
                self._dead_letter(msg, exc)
                dead += 1
        if not offsets:
            self._refresh_and_watch(time.monotonic(), [])
            return len(messages)
        for partition, end in offsets.items():
            state = self._partitions.setdefault(partition, _PartitionState())
            state.fetched_end = max(state.fetched_end, end)

        result = self._write(records) if records else WriteResult(written=0)
        if result is None:  # stop requested while Redis was down: leave offsets uncommitted
            return len(messages)
        if dead:
            self._flush_dead_letters()
        self._commit(offsets)
        elapsed = time.perf_counter() - started

        self._stats = replace(
            self._stats,
            consumed=self._stats.consumed + consumed,
            written=self._stats.written + result.written,
            stale=self._stats.stale + result.stale,
            dead_lettered=self._stats.dead_lettered + dead,
            batches=self._stats.batches + 1,
        )
        if records:
            self._consumed.inc(len(records))
            self._redis_write.observe(result.redis_seconds)
            if self.latency_sink is not None and result.latencies_us:
                in_consumer = result.written_time_us - fetched_us
                self.latency_sink(
                    list(result.latencies_us),
                    list(result.e2e_latencies_us),
                    [in_consumer] * len(result.latencies_us),
                )
        self._batch_seconds.observe(elapsed)
        self._batch_size.observe(consumed)
        now = time.monotonic()
        self._throughput.append((now, consumed))
        self._throughput_sum += consumed
        self._refresh_and_watch(now, list(offsets))
        return len(messages)

    def close(self) -> None:
        """Commit the written offsets synchronously, flush dead letters and leave the group.

        Call it from the thread that runs the loop (``run`` does, on its way out).
        """
        if self._closed:
            return
        self._closed = True
        if self._producer is not None:
            self._flush_dead_letters()
            self._producer = None
        self._commit_written("final commit")
        self._consumer.close()
        for partition in list(self._partitions):
            self._forget(partition)
        self._waiting_since = None

    def __enter__(self) -> ConsumerLoop[T]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- Kafka ------------------------------------------------------------------------------

    def _subscribe(self) -> None:
        if not self._subscribed:
            self._consumer.subscribe(
                [self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
            )
            self._subscribed = True

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # A new consumer taking over during a stall carries the stall's clock until it writes.
        carried = self._waiting_since if self._rejoining else None
        for tp in partitions:
            state = _PartitionState()
            if carried is not None:
                state.progress_at = carried
            self._partitions[tp.partition] = state
        if self._rejoining and not partitions:
            self._rejoining = False  # another member has them all: nothing waits for this one
        m.CONSUMER_ASSIGNED.labels(consumer=self.sink.name, topic=self.topic).set(len(self._partitions))
        logger.info(
            "%s assigned %s partitions %s", self.component, self.topic, [tp.partition for tp in partitions]
        )
        self._last_refresh = 0.0

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Everything written was already committed asynchronously; make sure it landed
        # before another member takes the partitions over, to keep its replay short.
        states = [(tp.partition, self._partitions.get(tp.partition)) for tp in partitions]
        offsets = [
            TopicPartition(self.topic, p, s.position)
            for p, s in states
            if s is not None and s.position is not None
        ]
        if offsets:
            try:
                consumer.commit(offsets=offsets, asynchronous=False)
            except KafkaException as exc:
                logger.warning(
                    "%s commit on revoke failed (replay will be idempotent): %s", self.component, exc
                )
        self._on_lost(consumer, partitions)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self._forget(tp.partition)
        logger.info(
            "%s gave up %s partitions %s", self.component, self.topic, [tp.partition for tp in partitions]
        )

    def _forget(self, partition: int) -> None:
        self._partitions.pop(partition, None)
        self._lag.pop(partition, None)
        m.CONSUMER_ASSIGNED.labels(consumer=self.sink.name, topic=self.topic).set(len(self._partitions))
        with contextlib.suppress(KeyError):
            m.CONSUMER_LAG.remove(self.sink.name, self.topic, str(partition))

    def _commit_written(self, what: str) -> None:
        """Commit every written position synchronously (before leaving the group)."""
        written = [
            TopicPartition(self.topic, p, s.position)
            for p, s in self._partitions.items()
            if s.position is not None
        ]
        if not written:
            return
        try:
            self._consumer.commit(offsets=written, asynchronous=False)
        except KafkaException as exc:
            m.ERRORS.labels(component=self.component, reason="commit_failed").inc()
            logger.warning(
                "%s %s failed (records will be replayed, idempotently): %s", self.component, what, exc
            )

    def _commit(self, offsets: dict[int, int]) -> None:
        now = time.monotonic()
        for partition, offset in offsets.items():
            state = self._partitions.setdefault(partition, _PartitionState())
            state.position = offset
            state.progress_at = now
        self._maybe_commit(now)

    def _maybe_commit(self, now: float) -> None:
        """Commit the written positions not yet committed, asynchronously, at most every interval."""
        if now - self._last_commit_at < self.commit_interval_s:
            return
        due = [
            TopicPartition(self.topic, p, s.position)
            for p, s in self._partitions.items()
            if s.position is not None and s.position != s.sent_commit
        ]
        if not due:
            return
        self._last_commit_at = now
        for tp in due:
            self._partitions[tp.partition].sent_commit = tp.offset
        self._consumer.commit(offsets=due, asynchronous=True)

    def _on_commit(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        if error is not None and error.code() != KafkaError._NO_OFFSET:
            for tp in partitions:  # send these again with the next commit
                state = self._partitions.get(tp.partition)
                if state is not None and state.sent_commit == tp.offset:
                    state.sent_commit = None
            m.ERRORS.labels(component=self.component, reason="commit_failed").inc()
            self._log.log(
                logger,
                logging.WARNING,
                "commit",
                "%s commit failed (records will be replayed, idempotently): %s",
                self.component,
                error,
            )

    def _on_error(self, error: KafkaError) -> None:
        reason = f"kafka_{error.name().lower().lstrip('_')}"
        m.ERRORS.labels(component=self.component, reason=reason).inc()
        self._log.log(logger, logging.WARNING, reason, "%s Kafka client error: %s", self.component, error)

    def _on_message_error(self, error: KafkaError) -> None:
        if error.fatal():
            raise ConsumerFatalError(error.name(), error.str())
        if error.code() == KafkaError._PARTITION_EOF:
            return
        self._on_error(error)

    # --- Redis ------------------------------------------------------------------------------

    def _write(self, records: list[T]) -> WriteResult | None:
        delay = self.retry_initial_s
        failed_since: float | None = None
        attempts = 0
        while True:
            try:
                result = self.sink.write(records)
            except redis.RedisError as exc:
                attempts += 1
                self._stats = replace(self._stats, redis_failures=self._stats.redis_failures + 1)
                m.ERRORS.labels(component=self.component, reason="redis_" + type(exc).__name__.lower()).inc()
                if failed_since is None:
                    failed_since = time.monotonic()
                    logger.error(
                        "%s Redis write of %d records failed (%s: %s); "
                        "retrying with backoff, offsets not committed",
                        self.component,
                        len(records),
                        type(exc).__name__,
                        exc,
                    )
                else:
                    self._log.log(
                        logger,
                        logging.WARNING,
                        "redis_retry",
                        "%s Redis still unavailable after %d attempts: %s",
                        self.component,
                        attempts,
                        exc,
                    )
                # A stall while Redis fails is detected and counted, but not "recovered" from:
                # the consumer is fine, and this retry loop is the recovery.
                self._refresh_and_watch(time.monotonic(), [], recover=False)
                if self._stop.wait(delay * random.uniform(0.5, 1.0)):
                    logger.warning(
                        "%s stopping while Redis is unavailable: %d records left uncommitted "
                        "(they will be consumed again)",
                        self.component,
                        len(records),
                    )
                    return None
                delay = min(delay * 2, self.retry_max_s)
                continue
            if failed_since is not None:
                # Blocked on Redis, the loop could not make progress on any partition: their
                # stall clocks start again now rather than blame Kafka for the outage.
                now = time.monotonic()
                for state in self._partitions.values():
                    state.progress_at = max(state.progress_at, now)
                logger.warning(
                    "%s Redis is back: batch written after %d failed attempts (%.1f s)",
                    self.component,
                    attempts,
                    time.monotonic() - failed_since,
                )
            return result

    # --- dead letters -----------------------------------------------------------------------

    def _dead_letter(self, msg: Message, exc: DecodeError) -> None:
        m.DEAD_LETTERS.labels(component=self.component, reason=exc.reason).inc()
        m.ERRORS.labels(component=self.component, reason=exc.reason).inc()
        self._log.log(
            logger,
            logging.WARNING,
            "decode:" + exc.reason,
            "%s bad record at %s[%s]@%s sent to %s: %s; sample %r",
            self.component,
            msg.topic(),
            msg.partition(),
            msg.offset(),
            self.dead_letter_topic,
            exc,
            exc.sample,
        )
        value = msg.value() or b""
        letter = DeadLetter(
            source=self.component,
            reason=exc.reason,
            detail=f"{exc.detail} (at {msg.topic()}[{msg.partition()}]@{msg.offset()})",
            payload=value.decode("utf-8", "backslashreplace"),
            receive_time_us=time.time_ns() // 1000,
        )
        producer = self._dead_letter_producer()
        headers: list[tuple[str, str | bytes | None]] = [
            ("topic", str(msg.topic())),
            ("partition", str(msg.partition())),
            ("offset", str(msg.offset())),
        ]
        while True:
            try:
                producer.produce(
                    self.dead_letter_topic,
                    encode(letter),
                    msg.key(),
                    headers=headers,
                    on_delivery=self._on_dead_letter_delivery,
                )
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)

    def _dead_letter_producer(self) -> Producer:
        if self._producer is None:
            self._producer = Producer(
                {
                    **self._kafka.client_config(),
                    "client.id": f"{self.component}-dead-letters",
                    "linger.ms": 5,
                    "enable.idempotence": False,
                    "error_cb": self._on_error,
                    "logger": rate_limited_logger("cryptopipe.store.librdkafka"),
                }
            )
        return self._producer

    def _on_dead_letter_delivery(self, error: KafkaError | None, _msg: Message) -> None:
        if error is not None:
            self._dead_letter_failures += 1
            m.ERRORS.labels(component=self.component, reason="dead_letter_undelivered").inc()
            self._log.log(
                logger,
                logging.ERROR,
                "dead_letter_undelivered",
                "%s dead letter not delivered to %s: %s",
                self.component,
                self.dead_letter_topic,
                error,
            )

    def _flush_dead_letters(self) -> None:
        if self._producer is not None:
            left = self._producer.flush(10.0)
            if left:
                m.ERRORS.labels(component=self.component, reason="dead_letter_undelivered").inc(left)
                logger.error("%s %d dead letters still undelivered after 10 s", self.component, left)

    # --- stalls -----------------------------------------------------------------------------

    def _refresh_and_watch(self, now: float, touched: list[int], *, recover: bool = True) -> None:
        self._refresh(now, touched)
        self._track_progress(now)
        self._watch_stall(now, recover=recover)

    def _track_progress(self, now: float) -> None:
        """Advance the progress clock of partitions with nothing waiting; find the oldest waiting one."""
        waiting: float | None = None
        for partition, state in self._partitions.items():
            lag = self._lag.get(partition)
            if lag == 0:
                state.progress_at = now
            elif lag is not None and lag > 0:
                waiting = state.progress_at if waiting is None else min(waiting, state.progress_at)
        if self._rejoining:
            known = bool(self._partitions) and all(p in self._lag for p in self._partitions)
            if waiting is None and not known:
                return  # the recreated consumer has not joined, or not learnt its lag, yet
            self._rejoining = False
        self._waiting_since = waiting

    def _stalled_partitions(self, now: float) -> dict[int, int]:
        """Partition -> lag, for every partition stalled for ``stall_timeout_s`` or longer."""
        return {
            p: lag
            for p, state in self._partitions.items()
            if (lag := self._lag.get(p, 0)) > 0 and now - state.progress_at >= self.stall_timeout_s
        }

    def _watch_stall(self, now: float, *, recover: bool) -> None:
        """Start or end a stall; with ``recover``, take the next recovery step when it is due."""
        stalled_for = self.seconds_since_progress(now)
        if stalled_for < self.stall_timeout_s:
            if self._stall is not None:
                logger.info(
                    "%s progressing again after a stall of %.1f s", self.component, now - self._stall.since
                )
                self._stall = None
            return
        if self._stall is None:
            assert self._waiting_since is not None
            self._stall = _Stall(since=self._waiting_since)
            self._stalls.inc()
            if not recover:
                self._log.log(
                    logger,
                    logging.WARNING,
                    "stall",
                    "%s stalled: %d records waiting, none written for %.1f s (Redis writes failing)",
                    self.component,
                    sum(v for v in self._lag.values() if v > 0),
                    stalled_for,
                )
        if recover and now >= self._stall.next_action_at:
            self._recover(self._stall, now, stalled_for)

    def _recover(self, stall: _Stall, now: float, stalled_for: float) -> None:
        """Seek the stalled partitions back first; if that did not help, recreate the consumer."""
        lags = self._stalled_partitions(now)
        if not stall.seeked:
            stall.seeked = True
            seeked = self._seek_written(sorted(lags))
            if seeked:
                m.CONSUMER_STALL_RECOVERIES.labels(consumer=self.sink.name, action="seek").inc()
                self._log.log(
                    logger,
                    logging.WARNING,
                    "stall:seek",
                    "%s stalled: %d records waiting on %s partitions %s, none written for %.1f s; "
                    "seeking them back to the last written offsets",
                    self.component,
                    sum(lags.values()),
                    self.topic,
                    seeked,
                    stalled_for,
                )
                stall.next_action_at = now + self.stall_timeout_s
                return
        stall.recreated += 1
        interval = min(self.stall_timeout_s * 2**stall.recreated, _RECREATE_INTERVAL_MAX_S)
        stall.next_action_at = now + interval
        m.CONSUMER_STALL_RECOVERIES.labels(consumer=self.sink.name, action="recreate").inc()
        self._log.log(
            logger,
            logging.WARNING,
            "stall:recreate",
            "%s still stalled: records waiting on %s, none written for %.1f s; committing, closing and "
            "recreating the Kafka consumer (attempt %d; next in %.0f s if still stalled)",
            self.component,
            self.topic,
            stalled_for,
            stall.recreated,
            interval,
        )
        self._recreate_consumer()

    def _resume_offset(self, state: _PartitionState) -> int | None:
        """Where consuming a partition must go on: after the last record written to Redis."""
        if state.position is not None:
            return state.position
        if state.has_commit:
            return state.committed
        if state.has_commit is False and self.from_beginning:
            return OFFSET_BEGINNING
        return None

    def _seek_written(self, partitions: list[int]) -> list[int]:
        """Seek each partition to its resume offset (dropping what was fetched); those it could."""
        seeked = []
        for partition in partitions:
            state = self._partitions.get(partition)
            offset = None if state is None else self._resume_offset(state)
            if offset is None:
                continue
            try:
                self._consumer.seek(TopicPartition(self.topic, partition, offset))
            except KafkaException as exc:
                logger.debug("%s seek of %s[%d] failed: %s", self.component, self.topic, partition, exc)
                continue
            seeked.append(partition)
        return seeked

    def _recreate_consumer(self) -> None:
        """Commit what was written, close the consumer and subscribe again with a new one."""
        self._commit_written("commit before recreating the consumer")
        try:
            self._consumer.close()
        except (KafkaException, RuntimeError) as exc:
            logger.warning("%s closing the stalled consumer failed: %s", self.component, exc)
        for partition in list(self._partitions):
            self._forget(partition)
        self._rejoining = True
        self._subscribed = False
        self._consumer = Consumer(self._consumer_config)
        self._last_refresh = 0.0

    # --- lag and throughput -----------------------------------------------------------------

    def _refresh(self, now: float, touched: list[int]) -> None:
        """Update lag (touched partitions now; all, with broker queries, every refresh period)."""
        if now - self._last_refresh >= self.watermark_refresh_s:
            self._last_refresh = now
            self._query_broker()
            touched = list(self._partitions)
        while self._throughput and now - self._throughput[0][0] > _THROUGHPUT_WINDOW_S:
            self._throughput_sum -= self._throughput.popleft()[1]
        span = max(now - self._throughput[0][0], 1.0) if self._throughput else 1.0
        self._throughput_gauge.set(self._throughput_sum / span)
        for partition in touched:
            state = self._partitions.get(partition)
            if state is None:
                continue
            lag = self._partition_lag(partition, state)
            if lag is None:
                continue
            self._lag[partition] = lag
            gauge = m.CONSUMER_LAG.labels(consumer=self.sink.name, topic=self.topic, partition=str(partition))
            gauge.set(lag)

    def _partition_lag(self, partition: int, state: _PartitionState) -> int | None:
        try:
            _, fetched_hwm = self._consumer.get_watermark_offsets(
                TopicPartition(self.topic, partition), cached=True
            )
        except KafkaException:
            fetched_hwm = _UNKNOWN
        end = max(fetched_hwm, state.listed_end, state.fetched_end)
        if state.position is not None:
            base = state.position
        elif state.has_commit:
            assert state.committed is not None
            base = state.committed
        elif state.has_commit is False:
            # No committed offset: the consumer starts at auto.offset.reset.
            base = state.listed_low if self.from_beginning else end
        else:
            return None
        if end < 0 or base < 0:
            return None
        return max(0, end - base)

    def _query_broker(self) -> None:
        """Ask ListOffsets (asynchronously) for every assigned partition; committed offsets where unknown.

        ListOffsets goes through a separate admin connection: on the consumer's own connection
        it would queue behind the long-polling fetch (measured: ~6 ms per partition at
        fetch.wait.max.ms=5), blocking the loop. The answer is collected on a later refresh.
        """
        self._collect_offsets()
        if self._pending_offsets is None and self._partitions:
            specs = {TopicPartition(self.topic, p): OffsetSpec.latest() for p in self._partitions}  # type: ignore[no-untyped-call]
            self._pending_offsets = self._admin.list_offsets(specs, request_timeout=5)
            low = [p for p, s in self._partitions.items() if s.has_commit is False and s.listed_low < 0]
            if self.from_beginning and low:
                specs = {TopicPartition(self.topic, p): OffsetSpec.earliest() for p in low}  # type: ignore[no-untyped-call]
                self._pending_low = self._admin.list_offsets(specs, request_timeout=5)
        unknown = [
            TopicPartition(self.topic, p)
            for p, s in self._partitions.items()
            if s.position is None and s.has_commit is None
        ]
        if unknown:
            try:
                for tp in self._consumer.committed(unknown, timeout=1.0):
                    found = self._partitions.get(tp.partition)
                    if found is not None and tp.error is None:
                        found.has_commit = tp.offset >= 0
                        found.committed = tp.offset if tp.offset >= 0 else None
            except KafkaException as exc:
                logger.debug("%s committed() failed: %s", self.component, exc)

    def _collect_offsets(self) -> None:
        if self._pending_offsets is not None and self._harvest(self._pending_offsets, low=False):
            self._pending_offsets = None
        if self._pending_low is not None and self._harvest(self._pending_low, low=True):
            self._pending_low = None

    def _harvest(self, futures: dict[TopicPartition, Future[Any]], *, low: bool) -> bool:
        """Store answered ListOffsets results; False while the request is still in flight."""
        if not all(f.done() for f in futures.values()):
            return False
        for tp, future in futures.items():
            state = self._partitions.get(tp.partition)
            error = future.exception()
            if error is not None:
                logger.debug("%s ListOffsets for %s failed: %s", self.component, tp, error)
            elif state is not None:
                offset = int(future.result().offset)
                if low:
                    state.listed_low = offset
                else:
                    state.listed_end = offset
        return True
