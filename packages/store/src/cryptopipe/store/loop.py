"""One consumer loop, Kafka -> Redis, parameterised by a :class:`~cryptopipe.store.sink.Sink`.

Each step polls a batch, decodes it, writes it through the sink (retrying while Redis fails)
and commits what was written: at least once, and effectively once since every sink write is
idempotent. The loop's other jobs have modules of their own: consumer, commits, lag, stall and
dead_letters (partitions holds their shared books). How it behaves and why, with the incidents
behind it: docs/consumer.md.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

import redis
from confluent_kafka import Message

from cryptopipe.observability import metrics as m
from cryptopipe.runtime import RateLimitedLog
from cryptopipe.runtime.kafka import poll_batch
from cryptopipe.schemas import DEAD_LETTERS, DecodeError, KafkaSettings
from cryptopipe.store.commits import Commits
from cryptopipe.store.consumer import GroupConsumer
from cryptopipe.store.dead_letters import DeadLetters
from cryptopipe.store.errors import RedisRefusedError
from cryptopipe.store.lag import LagTracker
from cryptopipe.store.partitions import Partitions
from cryptopipe.store.sink import Sink, WriteResult, refused
from cryptopipe.store.stall import StallWatch
from cryptopipe.store.throughput import Throughput

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_BATCH_SIZE = 500
DEFAULT_COMMIT_INTERVAL_S = 0.2
#: Records waiting and none written for this long: stalled (and the first recovery step runs).
DEFAULT_STALL_TIMEOUT_S = 5.0


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
    redelivered: int = 0
    """Records handled a second time: at or below the highest offset this loop had already handled
    in their partition (its position went back to the last commit). Also in ``consumed``, and
    written again idempotently, so they count as written or stale a second time."""


@dataclass(slots=True)
class _Batch(Generic[T]):
    """One poll's records, decoded."""

    records: list[T] = field(default_factory=list)
    ends: dict[int, int] = field(default_factory=dict)  # partition -> last offset + 1
    consumed: int = 0  # records without an error, dead letters included
    dead: int = 0
    redelivered: int = 0  # records at or below an offset already handled


class ConsumerLoop(Generic[T]):
    """Consumes ``topic`` in ``group_id`` and writes each batch through ``sink``.

    Run it with :meth:`run` (until :meth:`stop`, callable from any thread or a signal
    handler), or drive it step by step with :meth:`run_once`. ``latency_sink`` receives, for
    every written batch and trade by trade, the system latency, the E2E latency and the
    fetch-to-written part (µs; the last is the same for a whole batch: from the moment the poll
    returned it to Redis' answer), for exact benchmark percentiles split by stage.
    ``stall_timeout_s``: records waiting and none written for this long is a stall (see
    :mod:`cryptopipe.store.stall` for how the loop recovers from one).
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
        self.topic = topic
        self.group_id = group_id
        self.batch_size = batch_size
        self.from_beginning = from_beginning
        self.latency_sink = latency_sink
        self.poll_timeout_s = poll_timeout_s
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self._stop = threading.Event()
        self._log = RateLimitedLog(10.0)
        self._stats = LoopStats()
        self._closed = False
        #: Partition -> the highest offset handled (written, stale or dead-lettered) in this loop's life.
        self._handled: dict[int, int] = {}
        books = self._partitions = Partitions(sink.name, topic, from_beginning=from_beginning)
        self.component = books.component
        self._commits = Commits(books, interval_s=commit_interval_s, log=self._log)
        self._lag = LagTracker(books, kafka=kafka, refresh_s=watermark_refresh_s)
        self._stall = StallWatch(books, timeout_s=stall_timeout_s, log=self._log)
        self._group = GroupConsumer(
            books,
            commits=self._commits,
            lag=self._lag,
            stall=self._stall,
            kafka=kafka,
            group_id=group_id,
            log=self._log,
            overrides=consumer_overrides,
        )
        letters = dead_letter_topic or DEAD_LETTERS.with_prefix(kafka.topic_prefix).name
        self._dead_letters = DeadLetters(
            kafka, topic=letters, component=self.component, log=self._log, on_error=self._group.on_error
        )
        self._bind_metrics()

    def _bind_metrics(self) -> None:
        name = self.sink.name
        self._consumed = m.CONSUMED.labels(consumer=name, topic=self.topic)
        self._batch_seconds = m.CONSUMER_BATCH.labels(consumer=name)
        self._batch_size = m.CONSUMER_BATCH_SIZE.labels(consumer=name)
        self._throughput = Throughput(m.CONSUMER_THROUGHPUT.labels(consumer=name))
        self._redis_write = m.REDIS_WRITE.labels(consumer=name)
        self._redelivered = m.CONSUMER_REDELIVERED.labels(consumer=name)

    @property
    def stats(self) -> LoopStats:
        return self._stats

    @property
    def dead_letter_topic(self) -> str:
        """Where the records that do not decode go."""
        return self._dead_letters.topic

    def lag(self) -> dict[int, int]:
        """Records not yet written to Redis, per assigned partition (as of the last refresh)."""
        return dict(self._partitions.lag)

    def seconds_since_progress(self, now: float | None = None) -> float:
        """How long records have waited without any being written (worst partition); 0 if none wait."""
        return self._stall.seconds_since_progress(now)

    @property
    def stall_timeout_s(self) -> float:
        """Records waiting and none written for this long is a stall."""
        return self._stall.timeout_s

    @property
    def stalled(self) -> bool:
        """Records wait (lag > 0) and none has been written for ``stall_timeout_s`` or longer."""
        return self._stall.stalled

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
        self._group.subscribe()
        timeout = self.poll_timeout_s if timeout_s is None else timeout_s
        messages = poll_batch(self._group.consumer, self.batch_size, timeout)
        if not messages:
            now = time.monotonic()
            self._commits.maybe_commit(self._group.consumer, now)
            self._refresh_and_watch(now, [])
            return 0
        fetched_us = time.time_ns() // 1000
        started = time.perf_counter()
        batch = self._decode(messages)
        if not batch.ends:
            self._refresh_and_watch(time.monotonic(), [])
            return len(messages)
        self._partitions.fetched(batch.ends)
        result = self._write(batch.records) if batch.records else WriteResult(written=0)
        if result is None:  # stop requested while Redis was down: leave offsets uncommitted
            return len(messages)
        if batch.dead:
            self._dead_letters.flush()
        now = time.monotonic()
        self._partitions.written(batch.ends, now)
        handled = self._handled
        for partition, end in batch.ends.items():
            if end - 1 > handled.get(partition, -1):
                handled[partition] = end - 1
        self._commits.maybe_commit(self._group.consumer, now)
        self._account(batch, result, fetched_us, time.perf_counter() - started)
        return len(messages)

    def close(self) -> None:
        """Commit the written offsets synchronously, flush dead letters and leave the group.

        Call it from the thread that runs the loop (``run`` does, on its way out).
        """
        if self._closed:
            return
        self._closed = True
        self._stall.close()
        self._dead_letters.close()
        self._group.close()

    def __enter__(self) -> ConsumerLoop[T]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _decode(self, messages: list[Message]) -> _Batch[T]:
        """Decode one poll's records; those that do not decode go to the dead letters."""
        batch: _Batch[T] = _Batch()
        # A partition's records come in runs, in offset order: look up what was handled once per run.
        run_partition, handled = -1, -1
        for msg in messages:
            error = msg.error()
            if error is not None:
                self._group.on_message_error(error)
                continue
            partition, offset = msg.partition(), msg.offset()
            assert partition is not None
            assert offset is not None
            batch.ends[partition] = offset + 1
            if partition != run_partition:
                run_partition, handled = partition, self._handled.get(partition, -1)
            if offset <= handled:
                batch.redelivered += 1
            batch.consumed += 1
            value = msg.value()
            try:
                if value is None:
                    raise DecodeError("empty_value", "record has no value (tombstone)")
                batch.records.append(self.sink.decode(value))
            except DecodeError as exc:
                self._dead_letters.send(msg, exc)
                batch.dead += 1
        return batch

    def _write(self, records: list[T]) -> WriteResult | None:
        """Write through the sink, retrying with backoff while Redis fails; None if stopped meanwhile."""
        delay = self.retry_initial_s
        failed_since: float | None = None
        attempts = 0
        while True:
            try:
                result = self.sink.write(records)
            except redis.RedisError as exc:
                reason = refused(exc)
                if reason is not None:
                    m.ERRORS.labels(component=self.component, reason=f"redis_refused_{reason}").inc()
                    raise RedisRefusedError(self.component, reason, str(exc)) from None
                attempts += 1
                if failed_since is None:
                    failed_since = time.monotonic()
                self._write_failed(exc, len(records), attempts)
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
                self._stall.writes_resumed(time.monotonic())
                logger.warning(
                    "%s Redis is back: batch written after %d failed attempts (%.1f s)",
                    self.component,
                    attempts,
                    time.monotonic() - failed_since,
                )
            return result

    def _write_failed(self, exc: redis.RedisError, records: int, attempts: int) -> None:
        """Count and log a failed Redis write, and keep watching for a stall meanwhile."""
        self._stats = replace(self._stats, redis_failures=self._stats.redis_failures + 1)
        m.ERRORS.labels(component=self.component, reason="redis_" + type(exc).__name__.lower()).inc()
        if attempts == 1:
            logger.error(
                "%s Redis write of %d records failed (%s: %s); retrying with backoff, offsets not committed",
                self.component,
                records,
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
        # A stall while Redis fails is detected and counted, but not "recovered" from: the
        # consumer is fine, and the write retries are the recovery.
        self._refresh_and_watch(time.monotonic(), [], recover=False)

    def _account(self, batch: _Batch[T], result: WriteResult, fetched_us: int, elapsed: float) -> None:
        """Count a written batch in the stats and metrics, pass its latencies on, and update lag."""
        self._stats = replace(
            self._stats,
            consumed=self._stats.consumed + batch.consumed,
            written=self._stats.written + result.written,
            stale=self._stats.stale + result.stale,
            dead_lettered=self._stats.dead_lettered + batch.dead,
            batches=self._stats.batches + 1,
            redelivered=self._stats.redelivered + batch.redelivered,
        )
        if batch.redelivered:
            self._redelivered.inc(batch.redelivered)
        if batch.records:
            self._consumed.inc(len(batch.records))
            self._redis_write.observe(result.redis_seconds)
            if self.latency_sink is not None and result.latencies_us:
                in_consumer = result.written_time_us - fetched_us
                self.latency_sink(
                    list(result.latencies_us),
                    list(result.e2e_latencies_us),
                    [in_consumer] * len(result.latencies_us),
                )
        self._batch_seconds.observe(elapsed)
        self._batch_size.observe(batch.consumed)
        now = time.monotonic()
        self._throughput.add(now, batch.consumed)
        self._refresh_and_watch(now, list(batch.ends))

    def _refresh_and_watch(self, now: float, touched: list[int], *, recover: bool = True) -> None:
        self._lag.refresh(self._group.consumer, now, touched)
        self._throughput.update(now)
        if self._stall.watch(self._group.consumer, now, recover=recover):
            self._group.recreate()
