"""What the consumer loop knows about each partition assigned to it.

One :class:`PartitionState` per partition holds the figures the loop's parts share: the written
position (commits), the fetched end and the broker's offsets (lag) and the time of the last progress
(stalls). :class:`Partitions` holds them, with the lag last computed, for one loop on one topic.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from confluent_kafka import OFFSET_BEGINNING, OFFSET_INVALID, TopicPartition

from cryptopipe.observability import metrics as m


@dataclass(slots=True)
class PartitionState:
    position: int | None = None  # offset after the last record written to Redis
    fetched_end: int = OFFSET_INVALID  # highest offset fetched + 1
    listed_end: int = OFFSET_INVALID  # ListOffsets high watermark (wrong on Tansu, right elsewhere)
    listed_low: int = OFFSET_INVALID
    committed: int | None = None  # broker's committed offset at assignment; None = unknown
    has_commit: bool | None = None  # None = not asked yet
    sent_commit: int | None = None  # last position sent in a commit request
    # Monotonic time of the last progress: a batch written, or lag seen at 0 (nothing to wait for).
    progress_at: float = field(default_factory=time.monotonic)

    def resume_offset(self, from_beginning: bool) -> int | None:
        """Where consuming the partition must go on: after the last record written to Redis."""
        if self.position is not None:
            return self.position
        if self.has_commit:
            return self.committed
        if self.has_commit is False and from_beginning:
            return OFFSET_BEGINNING
        return None


class Partitions:
    """The partitions of ``topic`` assigned to the loop of ``consumer`` (the sink's name).

    ``from_beginning``: a partition with nothing committed starts at its beginning, else at its end.
    """

    def __init__(self, consumer: str, topic: str, *, from_beginning: bool) -> None:
        self.consumer = consumer
        """The ``consumer`` label of the loop's metrics."""
        self.component = f"{consumer}-consumer"
        """The ``component`` label of the loop's errors, and the prefix of its log lines."""
        self.topic = topic
        self.from_beginning = from_beginning
        self.states: dict[int, PartitionState] = {}
        self.lag: dict[int, int] = {}
        """Records not yet written to Redis, per partition whose lag is known."""

    def assign(self, partitions: Iterable[int], progress_at: float | None) -> None:
        """Start books for newly assigned partitions (their progress clock at ``progress_at`` if given)."""
        for partition in partitions:
            state = PartitionState()
            if progress_at is not None:
                state.progress_at = progress_at
            self.states[partition] = state
        self._count()

    def forget(self, partitions: Iterable[int]) -> None:
        """Drop the books (and the lag series) of partitions this consumer no longer has."""
        for partition in list(partitions):
            self.states.pop(partition, None)
            self.lag.pop(partition, None)
            self._count()
            with contextlib.suppress(KeyError):
                m.CONSUMER_LAG.remove(self.consumer, self.topic, str(partition))

    def forget_all(self) -> None:
        self.forget(self.states)

    def fetched(self, ends: Mapping[int, int]) -> None:
        """Note the end (last offset + 1) of what a batch fetched, per partition."""
        for partition, end in ends.items():
            state = self.states.setdefault(partition, PartitionState())
            state.fetched_end = max(state.fetched_end, end)

    def written(self, positions: Mapping[int, int], now: float) -> None:
        """Note what was written to Redis: each partition's new position, and progress at ``now``."""
        for partition, offset in positions.items():
            state = self.states.setdefault(partition, PartitionState())
            state.position = offset
            state.progress_at = now

    def positions(self, partitions: Iterable[int] | None = None) -> list[TopicPartition]:
        """The written positions (of ``partitions``, else of all), ready to commit."""
        wanted = self.states if partitions is None else partitions
        return [
            TopicPartition(self.topic, p, state.position)
            for p in wanted
            if (state := self.states.get(p)) is not None and state.position is not None
        ]

    def _count(self) -> None:
        m.CONSUMER_ASSIGNED.labels(consumer=self.consumer, topic=self.topic).set(len(self.states))
