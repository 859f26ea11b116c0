"""Rebuilding exact order books from Kafka alone (docs/order-books.md).

Read each symbol's latest checkpoint from ``book-snapshots`` (:func:`read_checkpoints`), seek
``book-updates`` to its ``updates_offset`` and follow the records from there
(:class:`~cryptopipe.schemas.book_follow.BookFollower`); or start at any offset and wait for a reset.
:func:`rebuild_books` rebuilds any number of symbols in one pass over each partition they share, and
can stop each at a requested update id, so it gives the exact book at that id for as long as the
topics retain it (:func:`rebuild_book` for one symbol). The books consumer uses the same functions
to warm-start a symbol it meets mid-epoch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
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

#: Seconds a read may go without a record before the partition counts as unreadable.
DEFAULT_TIMEOUT_S = 30.0
#: Seconds between two progress lines of a long rebuild.
PROGRESS_S = 5.0


class RebuildError(StoreError):
    """A topic could not be read to its end (no record for the timeout), or does not exist."""

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
    """Reads partitions of one topic, each from an offset up to its end as of when reading began.

    Gives up (:class:`RebuildError`) when ``timeout_s`` pass without a record it still expects.
    """

    def __init__(self, kafka: KafkaSettings, topic: str, timeout_s: float) -> None:
        self.topic = topic
        self.timeout_s = timeout_s
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

    def watermarks(self, partition: int) -> tuple[int, int]:
        """(low, high): the first offset retained and the offset the next record will take."""
        tp = TopicPartition(self.topic, partition)
        low, high = self.consumer.get_watermark_offsets(tp, timeout=self._left(), cached=False)
        return int(low), int(high)

    def read(self, partition: int, offset: int, high: int) -> Iterator[list[Message]]:
        """Batches of every record from ``offset`` (at least the low watermark) up to ``high``."""
        next_offset = offset
        if next_offset >= high:
            return
        self.consumer.assign([TopicPartition(self.topic, partition, offset)])
        self.deadline = time.monotonic() + self.timeout_s
        while next_offset < high:
            messages = self.consumer.consume(500, timeout=min(0.5, self._left()))
            if not messages:
                if self._left() <= 0:
                    raise RebuildError(
                        self.topic,
                        f"partition {partition} not read to offset {high}: no record at {next_offset} "
                        f"in {self.timeout_s:.0f} s",
                    )
                continue
            self.deadline = time.monotonic() + self.timeout_s
            batch = []
            for message in messages:
                if message.error() is not None:
                    logger.warning("%s[%d]: %s", self.topic, partition, message.error())
                    continue
                next_offset = (message.offset() or 0) + 1
                batch.append(message)
            yield batch

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
            low, high = reader.watermarks(partition)
            for batch in reader.read(partition, low, high):
                for message in batch:
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


@dataclass(slots=True)
class _Follow:
    """One symbol in a rebuild: its follower, from which offset it takes records, up to which id."""

    follower: BookFollower
    rebuilt: Rebuilt
    start: int
    until: int | None
    done: bool = False


class _Progress:
    """Logs, every ``interval_s`` while a rebuild lasts, how far it has read."""

    def __init__(self, topic: str, partitions: int, total: int, symbols: int, interval_s: float) -> None:
        self.topic = topic
        self.partitions = partitions
        self.total = total
        self.symbols = symbols
        self.interval_s = interval_s
        self.done = 0
        self.read = 0
        self.started = self.last = time.monotonic()
        self.logged = False

    def tick(self, records: int) -> None:
        self.read += records
        now = time.monotonic()
        if now - self.last >= self.interval_s:
            self.last, self.logged = now, True
            logger.info(
                "rebuilding %d books from %s: %d/%d partitions done, %d/%d records read, %.0f s",
                self.symbols,
                self.topic,
                self.done,
                self.partitions,
                self.read,
                self.total,
                now - self.started,
            )

    def finish(self) -> None:
        if self.logged:
            logger.info(
                "rebuilt %d books from %s: %d records read in %.1f s",
                self.symbols,
                self.topic,
                self.read,
                time.monotonic() - self.started,
            )


def rebuild_books(
    kafka: KafkaSettings,
    symbols: Iterable[str],
    *,
    updates_topic: str,
    snapshots_topic: str | None = None,
    checkpoints: Mapping[str, BookCheckpoint] | None = None,
    from_offset: int | None = None,
    until_update_ids: Mapping[str, int] | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    progress_s: float = PROGRESS_S,
) -> dict[str, Rebuilt]:
    """Each of ``symbols``' books from ``book-updates``, in one pass over each partition they use.

    A symbol starts from its entry in ``checkpoints``, else from ``from_offset`` with no book (the
    first reset starts one), else from its latest checkpoint in ``snapshots_topic`` (without one,
    its :class:`Rebuilt` has no book and partition -1). It ends at the end of its partition as of
    when reading began, or, with an entry in ``until_update_ids``, before the first record that
    would take its book past that id: the book is then the one at the largest update id <= it that
    the stream holds (diffs move books in steps). A start already past that id is returned as it
    is: compare ``book.update_id`` with what was asked. A long rebuild logs its progress every
    ``progress_s``.
    """
    wanted = list(dict.fromkeys(symbols))
    starts = dict(checkpoints or {})
    missing = {s for s in wanted if s not in starts} if from_offset is None else set()
    if missing:
        if snapshots_topic is None:
            raise ValueError("give checkpoints, a from_offset or the snapshots topic")
        starts |= read_checkpoints(kafka, snapshots_topic, missing, timeout_s=timeout_s)
    until = until_update_ids or {}
    out: dict[str, Rebuilt] = {}
    reader = _PartitionReader(kafka, updates_topic, timeout_s)
    try:
        count = reader.partitions() if any(s not in starts for s in wanted) else 0
        by_partition: dict[int, dict[bytes, _Follow]] = {}
        for symbol in wanted:
            follower = BookFollower(symbol)
            checkpoint = starts.get(symbol)
            if checkpoint is not None:
                follower.start(checkpoint)
                partition, offset = checkpoint.updates_partition, checkpoint.updates_offset
            elif from_offset is not None:
                partition, offset = java_partition(encode_key(symbol), count), from_offset
            else:
                out[symbol] = Rebuilt(symbol, partition=-1, next_offset=-1)
                continue
            rebuilt = out[symbol] = Rebuilt(symbol, partition, offset, checkpoint=checkpoint)
            state = _Follow(follower, rebuilt, offset, until.get(symbol))
            by_partition.setdefault(partition, {})[encode_key(symbol)] = state
        _read_all(reader, by_partition, len(out), progress_s)
        for states in by_partition.values():
            for state in states.values():
                follower, rebuilt = state.follower, state.rebuilt
                rebuilt.book, rebuilt.epoch, rebuilt.counts = follower.book, follower.epoch, follower.counts
    finally:
        reader.close()
    return out


def _read_all(
    reader: _PartitionReader, by_partition: dict[int, dict[bytes, _Follow]], symbols: int, progress_s: float
) -> None:
    """Read each partition once, from the earliest start among its symbols."""
    spans: dict[int, tuple[int, int]] = {}
    for partition, states in sorted(by_partition.items()):
        low, high = reader.watermarks(partition)
        for state in states.values():
            if state.start == OFFSET_BEGINNING or state.start < low:
                state.start = state.rebuilt.next_offset = low
        spans[partition] = (min(s.start for s in states.values()), high)
    total = sum(max(0, high - start) for start, high in spans.values())
    progress = _Progress(reader.topic, len(spans), total, symbols, progress_s)
    for partition, (start, high) in spans.items():
        _read_partition(reader, partition, start, high, by_partition[partition], progress)
        progress.done += 1
    progress.finish()


def _read_partition(
    reader: _PartitionReader,
    partition: int,
    start: int,
    high: int,
    states: dict[bytes, _Follow],
    progress: _Progress,
) -> None:
    """Give each symbol its records in order, stopping each before one that goes past its id."""
    active = len(states)
    end = start
    for batch in reader.read(partition, start, high):
        progress.tick(len(batch))
        for message in batch:
            offset = message.offset() or 0
            end = offset + 1
            state = states.get(message.key() or b"")
            if state is None or state.done or offset < state.start:
                continue
            try:
                record = decode_book_record(message.value() or b"")
            except DecodeError as exc:
                logger.warning("%s@%s: skipped: %s", state.follower.symbol, offset, exc)
                state.rebuilt.dead += 1
                continue
            reaches = record.update_id if isinstance(record, BookResetRecord) else record.final_update_id
            if state.until is not None and reaches > state.until:
                state.done = True
                state.rebuilt.next_offset = offset
                active -= 1
                if not active:
                    return
                continue
            state.follower.take(record)
    for state in states.values():
        if not state.done:
            state.rebuilt.next_offset = max(state.start, end)


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

    Starts from ``checkpoint``, else from ``from_offset``, else from the symbol's latest checkpoint
    in ``snapshots_topic``; :func:`rebuild_books` for one symbol, with its rules.
    """
    if checkpoint is None and from_offset is None and snapshots_topic is None:
        raise ValueError("give a checkpoint, a from_offset or the snapshots topic")
    return rebuild_books(
        kafka,
        [symbol],
        updates_topic=updates_topic,
        snapshots_topic=snapshots_topic,
        checkpoints=None if checkpoint is None else {symbol: checkpoint},
        from_offset=None if checkpoint is not None else from_offset,
        until_update_ids=None if until_update_id is None else {symbol: until_update_id},
        timeout_s=timeout_s,
    )[symbol]


class WarmStart:
    """Rebuilds symbols that the books consumer meets mid-epoch, from their checkpoints.

    The checkpoints are read in one pass over the compacted topic, at the first symbol that needs
    one, and again at most every ``refresh_s`` when a symbol needs a newer one; a symbol without a
    checkpoint of the update's epoch waits for its next reset. Symbols met together (a restarted
    consumer meets every symbol at once) are rebuilt together, in one pass over their partitions.
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

    def __call__(self, updates: Sequence[BookUpdateRecord]) -> dict[str, Rebuilt]:
        """Per update (one per symbol), its symbol's book just before it (or past it, if the
        checkpoint is); a symbol without a checkpoint of its update's epoch is left out."""
        checkpoints = {u.symbol: c for u in updates if (c := self._checkpoint(u)) is not None}
        if not checkpoints:
            return {}
        return rebuild_books(
            self.kafka,
            checkpoints,
            updates_topic=self.updates_topic,
            checkpoints=checkpoints,
            until_update_ids={u.symbol: u.first_update_id - 1 for u in updates if u.symbol in checkpoints},
            timeout_s=self.timeout_s,
        )
