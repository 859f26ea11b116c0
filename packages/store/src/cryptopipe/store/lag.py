"""How many records each assigned partition still has to write to Redis: the consumer lag.

Lag is the partition's end minus the written position. The end is the largest of the high
watermark carried by fetch responses, the broker's ListOffsets answer (asked every ``refresh_s``
on an admin connection, collected later) and the highest offset fetched + 1. Why three: the
Tansu notes in docs/consumer.md ("Lag").
"""

from __future__ import annotations

import logging
from concurrent.futures import Future
from typing import Any

from confluent_kafka import OFFSET_INVALID, Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]

from cryptopipe.observability import metrics as m
from cryptopipe.runtime import rate_limited_logger
from cryptopipe.schemas import KafkaSettings
from cryptopipe.store.partitions import Partitions, PartitionState

logger = logging.getLogger(__name__)

_Pending = dict[TopicPartition, Future[Any]]


class LagTracker:
    """Keeps ``partitions.lag`` and the lag gauges up to date."""

    def __init__(self, partitions: Partitions, *, kafka: KafkaSettings, refresh_s: float) -> None:
        self.refresh_s = refresh_s
        self._partitions = partitions
        self._from_beginning = partitions.from_beginning
        self._last_refresh = 0.0
        config: dict[str, Any] = {
            **kafka.client_config(),
            "client.id": f"{partitions.component}-offsets",
            "logger": rate_limited_logger("cryptopipe.store.librdkafka"),
        }
        self._admin = AdminClient(config)
        self._pending_offsets: _Pending | None = None
        self._pending_low: _Pending | None = None

    def refresh_soon(self) -> None:
        """Ask the broker again at the next refresh (the assignment changed)."""
        self._last_refresh = 0.0

    def refresh(self, consumer: Consumer, now: float, touched: list[int]) -> None:
        """Update lag (touched partitions now; all, with broker queries, every refresh period)."""
        if now - self._last_refresh >= self.refresh_s:
            self._last_refresh = now
            self._query_broker(consumer)
            touched = list(self._partitions.states)
        for partition in touched:
            state = self._partitions.states.get(partition)
            if state is None:
                continue
            lag = self._partition_lag(consumer, partition, state)
            if lag is None:
                continue
            self._partitions.lag[partition] = lag
            gauge = m.CONSUMER_LAG.labels(
                consumer=self._partitions.consumer, topic=self._partitions.topic, partition=str(partition)
            )
            gauge.set(lag)

    def _partition_lag(self, consumer: Consumer, partition: int, state: PartitionState) -> int | None:
        try:
            _, fetched_hwm = consumer.get_watermark_offsets(
                TopicPartition(self._partitions.topic, partition), cached=True
            )
        except KafkaException:
            fetched_hwm = OFFSET_INVALID
        end = max(fetched_hwm, state.listed_end, state.fetched_end)
        if state.position is not None:
            base = state.position
        elif state.has_commit:
            assert state.committed is not None
            base = state.committed
        elif state.has_commit is False:
            # No committed offset: the consumer starts at auto.offset.reset.
            base = state.listed_low if self._from_beginning else end
        else:
            return None
        if end < 0 or base < 0:
            return None
        return max(0, end - base)

    def _query_broker(self, consumer: Consumer) -> None:
        """Ask ListOffsets (asynchronously) for every assigned partition; committed offsets where unknown.

        ListOffsets goes through a separate admin connection: on the consumer's own connection
        it would queue behind the long-polling fetch and block the loop. The answer is collected
        on a later refresh.
        """
        self._collect_offsets()
        topic, states = self._partitions.topic, self._partitions.states
        if self._pending_offsets is None and states:
            specs = {TopicPartition(topic, p): OffsetSpec.latest() for p in states}  # type: ignore[no-untyped-call]
            self._pending_offsets = self._admin.list_offsets(specs, request_timeout=5)
            low = [p for p, s in states.items() if s.has_commit is False and s.listed_low < 0]
            if self._from_beginning and low:
                specs = {TopicPartition(topic, p): OffsetSpec.earliest() for p in low}  # type: ignore[no-untyped-call]
                self._pending_low = self._admin.list_offsets(specs, request_timeout=5)
        self._ask_committed(consumer)

    def _ask_committed(self, consumer: Consumer) -> None:
        """Learn the committed offset of partitions that have written nothing yet."""
        unknown = [
            TopicPartition(self._partitions.topic, p)
            for p, s in self._partitions.states.items()
            if s.position is None and s.has_commit is None
        ]
        if unknown:
            try:
                for tp in consumer.committed(unknown, timeout=1.0):
                    found = self._partitions.states.get(tp.partition)
                    if found is not None and tp.error is None:
                        found.has_commit = tp.offset >= 0
                        found.committed = tp.offset if tp.offset >= 0 else None
            except KafkaException as exc:
                logger.debug("%s committed() failed: %s", self._partitions.component, exc)

    def _collect_offsets(self) -> None:
        if self._pending_offsets is not None and self._harvest(self._pending_offsets, low=False):
            self._pending_offsets = None
        if self._pending_low is not None and self._harvest(self._pending_low, low=True):
            self._pending_low = None

    def _harvest(self, futures: _Pending, *, low: bool) -> bool:
        """Store answered ListOffsets results; False while the request is still in flight."""
        if not all(f.done() for f in futures.values()):
            return False
        for tp, future in futures.items():
            state = self._partitions.states.get(tp.partition)
            error = future.exception()
            if error is not None:
                logger.debug("%s ListOffsets for %s failed: %s", self._partitions.component, tp, error)
            elif state is not None:
                offset = int(future.result().offset)
                if low:
                    state.listed_low = offset
                else:
                    state.listed_end = offset
        return True
