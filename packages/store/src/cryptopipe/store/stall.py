"""Stalls: records wait on a partition (lag > 0) and none has been written for ``timeout_s``.

A stall is reported (``cryptopipe_consumer_seconds_since_progress``), counted once and, unless
Redis is the cause, recovered from: first by seeking the stalled partitions back to their last
written offset, then by recreating the consumer at doubling intervals up to a minute. Why
recreating helps (Tansu's tail stall): docs/consumer.md ("Stalls").
"""

from __future__ import annotations

import logging
import time
import weakref
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaException, TopicPartition

from cryptopipe.observability import metrics as m
from cryptopipe.runtime import RateLimitedLog
from cryptopipe.store.partitions import Partitions

logger = logging.getLogger(__name__)

#: Longest interval between two consumer recreations while a stall goes on.
_RECREATE_INTERVAL_MAX_S = 60.0


@dataclass(slots=True)
class _Stall:
    """One stall, from detection until records are written again (or nothing waits any more)."""

    since: float  # monotonic time of the last progress before it
    seeked: bool = False
    recreated: int = 0
    next_action_at: float = 0.0


class StallWatch:
    """Watches the progress clocks in ``partitions`` and says when to recreate the consumer."""

    def __init__(self, partitions: Partitions, *, timeout_s: float, log: RateLimitedLog) -> None:
        self.timeout_s = timeout_s
        self._partitions = partitions
        self._log = log
        self._closed = False
        # Oldest progress time of the partitions with records waiting; None: nothing waits.
        self._waiting_since: float | None = None
        self._stall: _Stall | None = None
        # After recreating the consumer, until the new one knows its lag: keep the stall's clock.
        self._rejoining = False
        self._stalls = m.CONSUMER_STALLS.labels(consumer=partitions.consumer)
        # Computed at scrape time, so the gauge keeps growing even while the loop thread hangs
        # (e.g. in a Redis write). A weak reference: the registry must not keep closed loops alive.
        this = weakref.ref(self)
        m.CONSUMER_SECONDS_SINCE_PROGRESS.labels(consumer=partitions.consumer).set_function(
            lambda: watch.seconds_since_progress() if (watch := this()) is not None else 0.0
        )

    def seconds_since_progress(self, now: float | None = None) -> float:
        """How long records have waited without any being written (worst partition); 0 if none wait."""
        since = self._waiting_since
        if since is None or self._closed:
            return 0.0
        return max(0.0, (time.monotonic() if now is None else now) - since)

    @property
    def stalled(self) -> bool:
        return self.seconds_since_progress() >= self.timeout_s

    def close(self) -> None:
        """The consumer is closing: nothing waits on it any more."""
        self._closed = True
        self._waiting_since = None

    @property
    def carried_clock(self) -> float | None:
        """The progress time a recreated consumer's partitions start with: the stall's, until they write."""
        return self._waiting_since if self._rejoining else None

    def assigned_none(self) -> None:
        """An assignment brought no partitions: another member has them all, nothing waits for us."""
        self._rejoining = False

    def writes_resumed(self, now: float) -> None:
        """Redis writes work again: blocked on Redis, no partition could progress, so none is blamed."""
        for state in self._partitions.states.values():
            state.progress_at = max(state.progress_at, now)

    def watch(self, consumer: Consumer, now: float, *, recover: bool) -> bool:
        """Track progress, then start or end a stall; with ``recover``, take the next step when due.

        True: the next step is to recreate ``consumer``, now (the caller does).
        """
        self._track_progress(now)
        stalled_for = self.seconds_since_progress(now)
        if stalled_for < self.timeout_s:
            if self._stall is not None:
                logger.info(
                    "%s progressing again after a stall of %.1f s",
                    self._partitions.component,
                    now - self._stall.since,
                )
                self._stall = None
            return False
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
                    self._partitions.component,
                    sum(v for v in self._partitions.lag.values() if v > 0),
                    stalled_for,
                )
        if recover and now >= self._stall.next_action_at:
            return self._recover(consumer, self._stall, now, stalled_for)
        return False

    def _track_progress(self, now: float) -> None:
        """Advance the progress clock of partitions with nothing waiting; find the oldest waiting one."""
        waiting: float | None = None
        lags = self._partitions.lag
        for partition, state in self._partitions.states.items():
            lag = lags.get(partition)
            if lag == 0:
                state.progress_at = now
            elif lag is not None and lag > 0:
                waiting = state.progress_at if waiting is None else min(waiting, state.progress_at)
        if self._rejoining:
            states = self._partitions.states
            known = bool(states) and all(p in lags for p in states)
            if waiting is None and not known:
                return  # the recreated consumer has not joined, or not learnt its lag, yet
            self._rejoining = False
        self._waiting_since = waiting

    def _stalled_partitions(self, now: float) -> dict[int, int]:
        """Partition -> lag, for every partition stalled for ``timeout_s`` or longer."""
        return {
            p: lag
            for p, state in self._partitions.states.items()
            if (lag := self._partitions.lag.get(p, 0)) > 0 and now - state.progress_at >= self.timeout_s
        }

    def _recover(self, consumer: Consumer, stall: _Stall, now: float, stalled_for: float) -> bool:
        """Seek the stalled partitions back first; if that did not help, recreate the consumer (True)."""
        lags = self._stalled_partitions(now)
        if not stall.seeked:
            stall.seeked = True
            seeked = self._seek_written(consumer, sorted(lags))
            if seeked:
                self._count_recovery("seek")
                self._log.log(
                    logger,
                    logging.WARNING,
                    "stall:seek",
                    "%s stalled: %d records waiting on %s partitions %s, none written for %.1f s; "
                    "seeking them back to the last written offsets",
                    self._partitions.component,
                    sum(lags.values()),
                    self._partitions.topic,
                    seeked,
                    stalled_for,
                )
                stall.next_action_at = now + self.timeout_s
                return False
        stall.recreated += 1
        interval = min(self.timeout_s * 2**stall.recreated, _RECREATE_INTERVAL_MAX_S)
        stall.next_action_at = now + interval
        self._count_recovery("recreate")
        self._log.log(
            logger,
            logging.WARNING,
            "stall:recreate",
            "%s still stalled: records waiting on %s, none written for %.1f s; committing, closing and "
            "recreating the Kafka consumer (attempt %d; next in %.0f s if still stalled)",
            self._partitions.component,
            self._partitions.topic,
            stalled_for,
            stall.recreated,
            interval,
        )
        # Until the new consumer knows its lag, its partitions keep the stall's clock.
        self._rejoining = True
        return True

    def _count_recovery(self, action: str) -> None:
        m.CONSUMER_STALL_RECOVERIES.labels(consumer=self._partitions.consumer, action=action).inc()

    def _seek_written(self, consumer: Consumer, partitions: list[int]) -> list[int]:
        """Seek each partition to its resume offset (dropping what was fetched); those it could."""
        seeked = []
        topic = self._partitions.topic
        for partition in partitions:
            state = self._partitions.states.get(partition)
            offset = None if state is None else state.resume_offset(self._partitions.from_beginning)
            if offset is None:
                continue
            try:
                consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException as exc:
                logger.debug(
                    "%s seek of %s[%d] failed: %s", self._partitions.component, topic, partition, exc
                )
                continue
            seeked.append(partition)
        return seeked
