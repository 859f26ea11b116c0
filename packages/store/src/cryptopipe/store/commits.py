"""When the consumer loop commits the offsets of what it wrote to Redis, and how.

Asynchronously, at most every ``interval_s``, while it runs; synchronously when partitions are
revoked, before the consumer is recreated and on close. A failed commit is counted and sent again
with the next one. Why not after every batch: docs/consumer.md ("Commits").
"""

from __future__ import annotations

import logging

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from cryptopipe.observability import metrics as m
from cryptopipe.runtime import RateLimitedLog
from cryptopipe.store.partitions import Partitions

logger = logging.getLogger(__name__)


class Commits:
    """Commits the written positions kept in ``partitions``."""

    def __init__(self, partitions: Partitions, *, interval_s: float, log: RateLimitedLog) -> None:
        self.interval_s = interval_s
        self._partitions = partitions
        self._log = log
        self._last_commit_at = 0.0

    def maybe_commit(self, consumer: Consumer, now: float) -> None:
        """Commit the written positions not yet committed, asynchronously, at most every interval."""
        if now - self._last_commit_at < self.interval_s:
            return
        states = self._partitions.states
        due = [
            TopicPartition(self._partitions.topic, p, s.position)
            for p, s in states.items()
            if s.position is not None and s.position != s.sent_commit
        ]
        if not due:
            return
        self._last_commit_at = now
        for tp in due:
            states[tp.partition].sent_commit = tp.offset
        consumer.commit(offsets=due, asynchronous=True)

    def commit_written(self, consumer: Consumer, what: str) -> None:
        """Commit every written position synchronously (before leaving the group)."""
        written = self._partitions.positions()
        if not written:
            return
        try:
            consumer.commit(offsets=written, asynchronous=False)
        except KafkaException as exc:
            m.ERRORS.labels(component=self._partitions.component, reason="commit_failed").inc()
            logger.warning(
                "%s %s failed (records will be replayed, idempotently): %s",
                self._partitions.component,
                what,
                exc,
            )

    def commit_revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Make sure what was written on revoked partitions is committed before another member reads them.

        It was already committed asynchronously; waiting for it keeps the new owner's replay short.
        """
        offsets = self._partitions.positions(tp.partition for tp in partitions)
        if offsets:
            try:
                consumer.commit(offsets=offsets, asynchronous=False)
            except KafkaException as exc:
                logger.warning(
                    "%s commit on revoke failed (replay will be idempotent): %s",
                    self._partitions.component,
                    exc,
                )

    def on_commit(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """librdkafka's ``on_commit`` callback: a failed commit is counted and sent again next time."""
        if error is not None and error.code() != KafkaError._NO_OFFSET:
            for tp in partitions:
                state = self._partitions.states.get(tp.partition)
                if state is not None and state.sent_commit == tp.offset:
                    state.sent_commit = None
            m.ERRORS.labels(component=self._partitions.component, reason="commit_failed").inc()
            self._log.log(
                logger,
                logging.WARNING,
                "commit",
                "%s commit failed (records will be replayed, idempotently): %s",
                self._partitions.component,
                error,
            )
