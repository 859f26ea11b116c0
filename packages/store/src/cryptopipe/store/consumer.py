"""The consumer loop's Kafka consumer: its settings, its life in the group, and its replacement.

Rebalances keep the partition books (:mod:`~cryptopipe.store.partitions`) in step with the
assignment; what was written on revoked partitions is committed before another member reads
them. A stalled consumer is closed and replaced by a new one (:meth:`GroupConsumer.recreate`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from cryptopipe.observability import metrics as m
from cryptopipe.runtime import RateLimitedLog, rate_limited_logger
from cryptopipe.runtime.kafka import LOW_LATENCY_FETCH, login_refused, said_once
from cryptopipe.schemas import KafkaSettings
from cryptopipe.store.commits import Commits
from cryptopipe.store.errors import ConsumerFatalError
from cryptopipe.store.lag import LagTracker
from cryptopipe.store.partitions import Partitions
from cryptopipe.store.stall import StallWatch

logger = logging.getLogger(__name__)


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


class GroupConsumer:
    """Reads ``partitions.topic`` in ``group_id`` with one librdkafka consumer (:attr:`consumer`) at a time.

    ``overrides`` take precedence over :func:`consumer_config` and this class's callbacks.
    """

    def __init__(
        self,
        partitions: Partitions,
        *,
        commits: Commits,
        lag: LagTracker,
        stall: StallWatch,
        kafka: KafkaSettings,
        group_id: str,
        log: RateLimitedLog,
        overrides: Mapping[str, Any] | None = None,
    ) -> None:
        self._partitions = partitions
        self._commits = commits
        self._lag = lag
        self._stall = stall
        self._log = log
        self._kafka = kafka
        self._refused = False
        self._subscribed = False
        self._config = consumer_config(
            kafka, group_id, from_beginning=partitions.from_beginning, client_id=partitions.component
        )
        self._config.update(
            {
                "on_commit": commits.on_commit,
                "error_cb": self.on_error,
                "logger": said_once(rate_limited_logger("cryptopipe.store.librdkafka")),
            }
        )
        self._config.update(overrides or {})
        self.consumer = Consumer(self._config)

    def subscribe(self) -> None:
        """Join the group (once per consumer)."""
        if not self._subscribed:
            self.consumer.subscribe(
                [self._partitions.topic],
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_lost,
            )
            self._subscribed = True

    def recreate(self) -> None:
        """Commit what was written, close the consumer and subscribe again with a new one."""
        self._commits.commit_written(self.consumer, "commit before recreating the consumer")
        try:
            self.consumer.close()
        except (KafkaException, RuntimeError) as exc:
            logger.warning("%s closing the stalled consumer failed: %s", self._partitions.component, exc)
        self._partitions.forget_all()
        self._subscribed = False
        self.consumer = Consumer(self._config)
        self._lag.refresh_soon()

    def close(self) -> None:
        """Commit what was written synchronously and leave the group (no commit once the broker
        refused our password: it would wait for a login that cannot succeed)."""
        if not self._refused:
            self._commits.commit_written(self.consumer, "final commit")
        self.consumer.close()
        self._partitions.forget_all()

    def on_error(self, error: KafkaError) -> None:
        """librdkafka's ``error_cb`` (of this consumer and of the loop's other clients).

        A refused password raises :class:`~cryptopipe.runtime.kafka.KafkaLoginRefused` (once; the
        client's later refusals are only counted): the loop stops, and its service says why.
        """
        reason = f"kafka_{error.name().lower().lstrip('_')}"
        m.ERRORS.labels(component=self._partitions.component, reason=reason).inc()
        refusal = login_refused(error, self._kafka)
        if refusal is not None:
            if not self._refused:
                self._refused = True
                raise refusal
            return
        self._log.log(
            logger, logging.WARNING, reason, "%s Kafka client error: %s", self._partitions.component, error
        )

    def on_message_error(self, error: KafkaError) -> None:
        """A fetched record that carries an error: fatal ones raise :class:`ConsumerFatalError`."""
        if error.fatal():
            raise ConsumerFatalError(error.name(), error.str())
        if error.code() == KafkaError._PARTITION_EOF:
            return
        self.on_error(error)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # A new consumer taking over during a stall carries the stall's clock until it writes.
        self._partitions.assign((tp.partition for tp in partitions), self._stall.carried_clock)
        if not partitions:
            self._stall.assigned_none()
        logger.info(
            "%s assigned %s partitions %s",
            self._partitions.component,
            self._partitions.topic,
            [tp.partition for tp in partitions],
        )
        self._lag.refresh_soon()

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._commits.commit_revoked(consumer, partitions)
        self._on_lost(consumer, partitions)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._partitions.forget(tp.partition for tp in partitions)
        logger.info(
            "%s gave up %s partitions %s",
            self._partitions.component,
            self._partitions.topic,
            [tp.partition for tp in partitions],
        )
