"""Where a restarted ingest takes up each symbol: the last trade id it published to ``prices``.

The exchange sends a new subscriber only what it plays from then on, and a new ingest process
knows nothing of what its predecessor published. Read back at start, each symbol's last record in
``prices`` gives the sequencer a last id, so the first live trade reveals the trades played while
no ingest ran, and the aggTrade backfill fetches them (docs/faults.md).

The read is bounded: only the partitions this process's symbols map to (murmur2, as the producer
picks them), at most ``window`` records back from each one's end, within ``timeout_s``. It joins
no consumer group and commits nothing: the principal needs READ and DESCRIBE on ``prices`` only.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from cryptopipe.ingest.errors import ResumeError
from cryptopipe.runtime.logs import rate_limited_logger
from cryptopipe.schemas import DecodeError, KafkaSettings, decode_trade, encode_key
from cryptopipe.schemas.topics import java_partition

#: Longest the read at start may take; beyond it ingest starts without resuming.
RESUME_TIMEOUT_S = 10.0
#: Symbols named one by one in the log line; the rest are counted.
_NAMED = 10


@dataclass(frozen=True, slots=True)
class ResumePoint:
    """What the end of the trades topic says about this process's symbols."""

    last_ids: dict[str, int] = field(default_factory=dict)
    """Symbol -> the id of its last trade in the topic."""
    not_resumed: dict[str, str] = field(default_factory=dict)
    """Symbol -> why it is not resumed (no record in the window read, an empty or missing topic,
    a last record of the other stream kind)."""
    partitions: int = 0
    """Partitions read."""
    records: int = 0
    """Records read back, every symbol's."""
    seconds: float = 0.0
    """How long the read took."""

    def describe(self, topic: str) -> str:
        """One line for the log: how many symbols resume, from which ids, how long it took."""
        resumed = sorted(self.last_ids.items())
        line = (
            f"resuming {len(resumed)} of {len(resumed) + len(self.not_resumed)} symbols from the end of "
            f"{topic} ({self.partitions} partitions, {self.records} records read in {self.seconds:.3f} s)"
        )
        if resumed:
            line += ": " + _named(f"{symbol} after id {last}" for symbol, last in resumed)
        if self.not_resumed:
            line += "; from their first live trade: " + _named(
                f"{symbol} ({why})" for symbol, why in sorted(self.not_resumed.items())
            )
        return line


def _named(items: Iterable[str]) -> str:
    items = list(items)
    more = f", and {len(items) - _NAMED} more" if len(items) > _NAMED else ""
    return ", ".join(items[:_NAMED]) + more


def _config(kafka: KafkaSettings) -> dict[str, Any]:
    return {
        **kafka.client_config(),
        "group.id": "cryptopipe-ingest-resume",  # never joins: partitions are assigned, nothing committed
        "client.id": "cryptopipe-ingest-resume",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",
        "logger": rate_limited_logger("cryptopipe.ingest.librdkafka"),
    }


def read_resume_point(
    kafka: KafkaSettings,
    topic: str,
    symbols: Iterable[str],
    *,
    kind: str,
    window: int,
    timeout_s: float = RESUME_TIMEOUT_S,
) -> ResumePoint:
    """Each symbol's last trade id in ``topic`` (upper-case symbols, trades of ``kind`` only).

    An empty or missing topic resumes nothing and is no error. Raises :class:`ResumeError` when
    the topic cannot be read (not allowed, no broker) or not to its end within ``timeout_s``.
    """
    started = time.monotonic()
    wanted = {encode_key(symbol): symbol for symbol in symbols}
    try:
        reader = _TailReader(kafka, topic, started + timeout_s)
    except KafkaException as exc:
        raise ResumeError(topic, exc.args[0].str()) from None
    try:
        count = reader.partition_count()
        if count == 0:
            why = f"no topic {topic}"
            return ResumePoint(not_resumed=dict.fromkeys(wanted.values(), why), seconds=_since(started))
        partition_of = {key: java_partition(key, count) for key in wanted}
        windows = reader.windows(set(partition_of.values()), window)
        latest, records = reader.read_to_end(windows, wanted)
    except KafkaException as exc:
        raise ResumeError(topic, exc.args[0].str()) from None
    finally:
        reader.close()
    last_ids: dict[str, int] = {}
    not_resumed: dict[str, str] = {}
    for key, symbol in wanted.items():
        partition = partition_of[key]
        value = latest.get(key)
        if value is None:
            not_resumed[symbol] = (
                f"no record in the last {window} of partition {partition}"
                if partition in windows
                else f"partition {partition} is empty"
            )
            continue
        try:
            trade = decode_trade(value)
        except DecodeError as exc:
            not_resumed[symbol] = f"its last record does not decode: {exc.reason}"
            continue
        if trade.kind != kind:
            not_resumed[symbol] = f"its last record is of kind {trade.kind}, this ingest runs {kind}"
            continue
        last_ids[symbol] = trade.trade_id
    return ResumePoint(last_ids, not_resumed, len(windows), records, _since(started))


def _since(started: float) -> float:
    return round(time.monotonic() - started, 3)


class _TailReader:
    """Reads partitions of one topic from an offset to their end, against one deadline."""

    def __init__(self, kafka: KafkaSettings, topic: str, deadline: float) -> None:
        self.topic = topic
        self.deadline = deadline
        self.consumer = Consumer(_config(kafka))

    def _left(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise ResumeError(self.topic, "not read to its end in time")
        return left

    def partition_count(self) -> int:
        """The topic's partitions; 0 when it does not exist."""
        metadata = self.consumer.list_topics(self.topic, timeout=self._left()).topics.get(self.topic)
        if metadata is None:
            return 0
        if metadata.error is not None:
            if metadata.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                return 0
            raise ResumeError(self.topic, metadata.error.str())
        return len(metadata.partitions)

    def windows(self, partitions: set[int], window: int) -> dict[int, tuple[int, int]]:
        """Partition -> (the offset ``window`` records before its end or its first, its high
        watermark), for the partitions that hold records."""
        found: dict[int, tuple[int, int]] = {}
        for partition in sorted(partitions):
            tp = TopicPartition(self.topic, partition)
            low, high = self.consumer.get_watermark_offsets(tp, timeout=self._left(), cached=False)
            if high > low:
                found[partition] = (max(low, high - window), high)
        return found

    def read_to_end(
        self, windows: dict[int, tuple[int, int]], wanted: dict[bytes, str]
    ) -> tuple[dict[bytes, bytes], int]:
        """The last value of each wanted key in each partition's window, and how many records
        were read. A partition is read to its end: where the broker says there is no more, or,
        past its high watermark, where a fetch brings nothing (a broker may report the watermark
        short of the log, and more may have come since it was asked)."""
        latest: dict[bytes, bytes] = {}
        records = 0
        pending = set(windows)
        if not pending:
            return latest, records
        self.consumer.assign([TopicPartition(self.topic, p, start) for p, (start, _) in windows.items()])
        position = {p: start for p, (start, _) in windows.items()}
        while pending:
            messages = self.consumer.consume(1000, timeout=min(0.5, self._left()))
            if not messages and all(position[p] >= windows[p][1] for p in pending):
                break
            for message in messages:
                error, partition = message.error(), message.partition()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        pending.discard(partition)
                        continue
                    if error.code() == KafkaError.GROUP_AUTHORIZATION_FAILED:
                        # The client looks up its group's coordinator though it joins none; a
                        # principal with no right on groups is refused that, which this read
                        # does not need.
                        continue
                    raise ResumeError(self.topic, error.str())
                records += 1
                position[partition] = (message.offset() or 0) + 1  # type: ignore[index]
                key, value = message.key(), message.value()
                if isinstance(key, bytes) and key in wanted and value is not None:
                    latest[key] = value
        return latest, records

    def close(self) -> None:
        self.consumer.close()
