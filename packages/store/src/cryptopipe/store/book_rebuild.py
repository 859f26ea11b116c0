"""Rebuilding a symbol's exact order book from Kafka alone (docs/order-books.md).

Read the symbol's latest checkpoint from ``book-snapshots`` (:func:`read_checkpoints`), seek
``book-updates`` to its ``updates_offset`` and follow the records from there
(:class:`~cryptopipe.schemas.book_follow.BookFollower`); or start at any offset and wait for a reset.
:func:`rebuild_book` can stop at a requested update id, so it gives the exact book at that id for as
long as the topics retain it. The books consumer uses the same functions to warm-start a symbol it
meets mid-epoch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition

from cryptopipe.schemas import (
    BookCheckpoint,
    BookResetRecord,
    BookUpdateRecord,
    DecodeError,
    KafkaSettings,
    OrderBook,
    decode_book_checkpoint,
    decode_book_record,
    encode_key,
)
from cryptopipe.schemas.book_follow import BookFollower, FollowCounts
from cryptopipe.schemas.topics import java_partition
from cryptopipe.store.errors import StoreError

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 30.0


class RebuildError(StoreError):
    """A topic could not be read to its end within the timeout, or does not exist."""

    def __init__(self, topic: str, detail: str) -> None:
        self.topic = topic
        self.detail = detail
        super().__init__(f"{topic}: {detail}")


@dataclass(slots=True)
class Rebuilt:
    """What a rebuild ended with: the book (None when no live book was reached) at ``epoch``.

    ``next_offset`` is the offset in ``partition`` of the first record not taken; ``counts`` are the
    records of this symbol taken, ``dead`` those that did not decode (skipped). ``checkpoint`` is the
    one it started from, if any.
    """

    symbol: str
    partition: int
    next_offset: int
    book: OrderBook | None = None
    epoch: int | None = None
    checkpoint: BookCheckpoint | None = None
    counts: FollowCounts = field(default_factory=FollowCounts)
    dead: int = 0


class _PartitionReader:
    """Reads one partition from an offset up to its end as of when reading began."""

    def __init__(self, kafka: KafkaSettings, topic: str, timeout_s: float) -> None:
        self.topic = topic
        self.deadline = time.monotonic() + timeout_s
        self.consumer = Consumer(
            {
                **kafka.client_config(),
                "group.id": "cryptopipe-book-rebuild",  # never joins: partitions are assigned
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "enable.partition.eof": False,
            }
        )

    def partitions(self) -> int:
        metadata = self.consumer.list_topics(self.topic, timeout=self._left()).topics.get(self.topic)
        if metadata is None or metadata.error is not None or not metadata.partitions:
            raise RebuildError(self.topic, "no such topic")
        return len(metadata.partitions)

    def read(self, partition: int, offset: int) -> Iterator[Message]:
        """Every record from ``offset`` (OFFSET_BEGINNING for the start) to the end seen now."""
        tp = TopicPartition(self.topic, partition)
        low, high = self.consumer.get_watermark_offsets(tp, timeout=self._left(), cached=False)
        next_offset = low if offset == OFFSET_BEGINNING else offset
        if next_offset >= high:
            return
        self.consumer.assign([TopicPartition(self.topic, partition, offset)])
        while next_offset < high:
            messages = self.consumer.consume(500, timeout=min(0.5, self._left()))
            if not messages and self._left() <= 0:
                raise RebuildError(self.topic, f"partition {partition} not read to offset {high} in time")
            for message in messages:
                if message.error() is not None:
                    logger.warning("%s[%d]: %s", self.topic, partition, message.error())
                    continue
                next_offset = (message.offset() or 0) + 1
                yield message

    def _left(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def close(self) -> None:
        self.consumer.close()


def read_checkpoints(
    kafka: KafkaSettings, topic: str, symbols: set[str] | None = None, *, timeout_s: float = DEFAULT_TIMEOUT_S
) -> dict[str, BookCheckpoint]:
    """The latest checkpoint per symbol in the compacted ``topic`` (only ``symbols``' partitions, if given).

    A value that does not decode is logged and skipped, so an older checkpoint of its symbol stands.
    """
    reader = _PartitionReader(kafka, topic, timeout_s)
    found: dict[str, BookCheckpoint] = {}
    try:
        count = reader.partitions()
        keys = None if symbols is None else {encode_key(s) for s in symbols}
        wanted = range(count) if keys is None else sorted({java_partition(k, count) for k in keys})
        for partition in wanted:
            for message in reader.read(partition, OFFSET_BEGINNING):
                value = message.value()
                if value is None or (keys is not None and message.key() not in keys):
                    continue
                try:
                    checkpoint = decode_book_checkpoint(value)
                except DecodeError as exc:
                    logger.warning("%s[%d]@%s: skipped: %s", topic, partition, message.offset(), exc)
                    continue
                found[checkpoint.symbol] = checkpoint
    finally:
        reader.close()
    return found


def rebuild_book(
    kafka: KafkaSettings,
    symbol: str,
    *,
    updates_topic: str,
    snapshots_topic: str | None = None,
    checkpoint: BookCheckpoint | None = None,
    from_offset: int | None = None,
    until_update_id: int | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> Rebuilt:
    """``symbol``'s book from ``book-updates``: at the end of the partition, or at ``until_update_id``.

    Starts from ``checkpoint``, else from ``from_offset`` with no book (the first reset starts one),
    else from the symbol's latest checkpoint in ``snapshots_topic``. With ``until_update_id`` it stops
    before the first record that would take the book past that id, so the book is the one at the
    largest update id <= ``until_update_id`` that the stream holds (diffs move books in steps). A
    start already past that id is returned as it is: compare ``book.update_id`` with what was asked.
    """
    if checkpoint is None and from_offset is None:
        if snapshots_topic is None:
            raise ValueError("give a checkpoint, a from_offset or the snapshots topic")
        checkpoint = read_checkpoints(kafka, snapshots_topic, {symbol}, timeout_s=timeout_s).get(symbol)
        if checkpoint is None:
            return Rebuilt(symbol, partition=-1, next_offset=-1)
    reader = _PartitionReader(kafka, updates_topic, timeout_s)
    try:
        if checkpoint is not None:
            partition, offset = checkpoint.updates_partition, checkpoint.updates_offset
        else:
            assert from_offset is not None
            partition, offset = java_partition(encode_key(symbol), reader.partitions()), from_offset
        follower = BookFollower(symbol)
        if checkpoint is not None:
            follower.start(checkpoint)
        rebuilt = Rebuilt(symbol, partition, offset, checkpoint=checkpoint)
        _follow(reader.read(partition, offset), follower, rebuilt, until_update_id)
    finally:
        reader.close()
    rebuilt.book, rebuilt.epoch, rebuilt.counts = follower.book, follower.epoch, follower.counts
    return rebuilt


def _follow(messages: Iterator[Message], follower: BookFollower, rebuilt: Rebuilt, until: int | None) -> None:
    """Take the symbol's records in order, stopping before one that goes past ``until``."""
    key = encode_key(follower.symbol)
    for message in messages:
        if message.key() != key:
            rebuilt.next_offset = (message.offset() or 0) + 1
            continue
        try:
            record = decode_book_record(message.value() or b"")
        except DecodeError as exc:
            logger.warning("%s@%s: skipped: %s", follower.symbol, message.offset(), exc)
            rebuilt.dead += 1
            rebuilt.next_offset = (message.offset() or 0) + 1
            continue
        reaches = record.update_id if isinstance(record, BookResetRecord) else record.final_update_id
        if until is not None and reaches > until:
            return
        follower.take(record)
        rebuilt.next_offset = (message.offset() or 0) + 1


class WarmStart:
    """Rebuilds symbols that the books consumer meets mid-epoch, from their checkpoints.

    The checkpoints are read in one pass over the compacted topic, at the first symbol that needs
    one, and again at most every ``refresh_s`` when a symbol needs a newer one; a symbol without a
    checkpoint of the update's epoch waits for its next reset.
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        *,
        updates_topic: str,
        snapshots_topic: str,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        refresh_s: float = 30.0,
    ) -> None:
        self.kafka = kafka
        self.updates_topic = updates_topic
        self.snapshots_topic = snapshots_topic
        self.timeout_s = timeout_s
        self.refresh_s = refresh_s
        self._checkpoints: dict[str, BookCheckpoint] = {}
        self._read_at: float | None = None

    def _checkpoint(self, update: BookUpdateRecord) -> BookCheckpoint | None:
        checkpoint = self._checkpoints.get(update.symbol)
        fits = checkpoint is not None and checkpoint.epoch == update.epoch
        if not fits and (self._read_at is None or time.monotonic() - self._read_at >= self.refresh_s):
            self._checkpoints = read_checkpoints(self.kafka, self.snapshots_topic, timeout_s=self.timeout_s)
            self._read_at = time.monotonic()
            checkpoint = self._checkpoints.get(update.symbol)
        return checkpoint if checkpoint is not None and checkpoint.epoch == update.epoch else None

    def __call__(self, update: BookUpdateRecord) -> Rebuilt | None:
        """The symbol's book just before ``update`` (or past it, if the checkpoint is), or None."""
        checkpoint = self._checkpoint(update)
        if checkpoint is None:
            return None
        return rebuild_book(
            self.kafka,
            update.symbol,
            updates_topic=self.updates_topic,
            checkpoint=checkpoint,
            until_update_id=update.first_update_id - 1,
            timeout_s=self.timeout_s,
        )
