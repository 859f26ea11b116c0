"""Kafka as a Spark streaming source without the JVM connector: a PySpark 4 Python Data Source.

Spark's own Kafka source (``spark-sql-kafka-0-10``) is a Maven artifact that cannot be fetched on
an offline machine, so this module reads the ``prices`` topic with confluent-kafka instead.

Offsets are ``{"topic": name, "partitions": {"0": next_offset, ...}}``. Spark journals the
start and end of every micro-batch in its checkpoint, so a restarted query re-reads exactly the
ranges it must; :meth:`KafkaStreamReader.read` is a pure function of its range.

The end offset of a batch must be one that a reader can actually reach. The broker's high
watermark (ListOffsets) cannot be trusted for that: Tansu 0.6 returns the base offset of the last
record *batch* + 1, which under-reports by up to a batch. Instead, a *probe* consumer on the
driver tails every partition and the end offset is the highest offset it has actually fetched
+ 1. That needs no ListOffsets round trip per trigger (the engine asks for the latest offset every
10 ms when idle) and is correct on every broker: an offset that was fetched exists.

Readers ask librdkafka for exactly the number of records left in their range, so ``consume``
returns as soon as they have arrived instead of waiting out its timeout (what made the first
spike slow). Consumers are cached per Python worker process and reused across micro-batches when
their position already matches the next range, which skips the connect and the first fetch.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition
from pyspark.sql.datasource import DataSource, DataSourceStreamReader, InputPartition
from pyspark.sql.streaming.datasource import ReadAllAvailable, ReadLimit, ReadMaxRows
from pyspark.sql.types import StructType

from cryptopipe.runtime import rate_limited_logger
from cryptopipe.schemas import DecodeError, decode_trade

logger = logging.getLogger(__name__)

SOURCE_NAME = "cryptopipe_kafka"

#: Rows as the source emits them. Prices stay decimal strings (cast to DECIMAL(38,18) in Spark);
#: ``error`` is the decode-failure reason for records that are not trades (other columns null).
TRADE_SCHEMA = (
    "symbol STRING, trade_id BIGINT, price STRING, trade_time_us BIGINT, receive_time_us BIGINT, "
    "kafka_partition INT, kafka_offset BIGINT, error STRING"
)

_ARROW_SCHEMA = pa.schema(
    [
        ("symbol", pa.string()),
        ("trade_id", pa.int64()),
        ("price", pa.string()),
        ("trade_time_us", pa.int64()),
        ("receive_time_us", pa.int64()),
        ("kafka_partition", pa.int32()),
        ("kafka_offset", pa.int64()),
        ("error", pa.string()),
    ]
)

_KAFKA_OPTION_PREFIX = "kafka."
_READ_STALL_TIMEOUT_S = 60.0
#: A cached consumer this many records behind a range's start skips forward rather than re-assigning.
_MAX_SKIP = 200_000
_METADATA_REFRESH_S = 5.0


class KafkaSourceError(RuntimeError):
    """The source cannot make progress (topic vanished, broker unreachable, data lost)."""


@dataclass(frozen=True, slots=True)
class KafkaRange:
    """One Kafka partition's records ``[start, end)`` for one micro-batch."""

    topic: str
    partition: int
    start: int
    end: int

    @property
    def size(self) -> int:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class KafkaRanges(InputPartition):
    """The ranges one Spark task reads, one after the other."""

    ranges: tuple[KafkaRange, ...]


def source_options(client_config: Mapping[str, str], topic: str, **extra: str) -> dict[str, str]:
    """Spark reader options for :class:`KafkaTradeSource`.

    librdkafka settings travel one per option (``kafka.<name>``) so that Spark's redaction of
    option names matching ``password|secret|token`` keeps secrets out of plans and logs.
    """
    options = {_KAFKA_OPTION_PREFIX + key: value for key, value in client_config.items()}
    options["topic"] = topic
    options.update(extra)
    return options


def _client_config(options: Mapping[str, str]) -> dict[str, str]:
    return {
        key[len(_KAFKA_OPTION_PREFIX) :]: value
        for key, value in options.items()
        if key.lower().startswith(_KAFKA_OPTION_PREFIX)
    }


class KafkaTradeSource(DataSource):
    """``spark.readStream.format("cryptopipe_kafka")``: trades from a Kafka topic.

    Options: ``topic`` (required), ``startingOffsets`` (``earliest`` | ``latest``, default
    earliest), ``maxRecordsPerTrigger`` (optional cap per micro-batch), ``minRecordsPerTask``
    (below it a micro-batch is read by one task; default 5000), ``kafka.<librdkafka key>``.
    """

    @classmethod
    def name(cls) -> str:
        return SOURCE_NAME

    def schema(self) -> str:
        return TRADE_SCHEMA

    def streamReader(self, schema: StructType) -> DataSourceStreamReader:
        return KafkaStreamReader(dict(self.options))


def _assigned_consumer(config: Mapping[str, str], group_id: str, *, queued_kbytes: int) -> Consumer:
    """A consumer for assigned partitions: commits nothing, fetches with little delay, no EOF events.

    ``queued_kbytes`` bounds what the background fetcher queues ahead (``queued.max.messages.kbytes``).
    """
    return Consumer(
        {
            **config,
            "group.id": group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": False,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 10,
            "fetch.min.bytes": 1,
            "queued.max.messages.kbytes": queued_kbytes,
            "logger": rate_limited_logger("cryptopipe.alerting.librdkafka"),
        }
    )


class _EndOffsetProbe:
    """Tails every partition from the driver and remembers the highest offset fetched + 1."""

    def __init__(self, config: dict[str, str], topic: str) -> None:
        self._topic = topic
        self._consumer = _assigned_consumer(
            config, f"cryptopipe-alerting-probe-{uuid.uuid4().hex}", queued_kbytes=4096
        )
        self._assigned: dict[int, int] = {}
        self.ends: dict[int, int] = {}

    def follow(self, starts: Mapping[int, int]) -> None:
        """Make sure every partition in ``starts`` is tailed from at least its start offset."""
        changed = False
        for partition, start in starts.items():
            if partition not in self._assigned or self.ends.get(partition, -1) < start:
                self._assigned[partition] = max(start, self.ends.get(partition, 0))
                self.ends[partition] = max(start, self.ends.get(partition, 0))
                changed = True
        if changed:
            self._consumer.assign(
                [TopicPartition(self._topic, p, offset) for p, offset in sorted(self._assigned.items())]
            )

    def drain(self) -> dict[int, int]:
        """Take whatever the background fetcher has queued; never waits for the network."""
        while True:
            messages = self._consumer.consume(num_messages=10000, timeout=0)
            if not messages:
                break
            for message in _records(messages):
                partition = message.partition()
                offset = message.offset()
                if partition is None or offset is None:
                    continue
                if offset + 1 > self.ends.get(partition, 0):
                    self.ends[partition] = offset + 1
        return dict(self.ends)

    def close(self) -> None:
        self._consumer.close()


class KafkaStreamReader(DataSourceStreamReader):
    """Plans micro-batches as per-partition offset ranges; reads them with cached consumers."""

    def __init__(self, options: dict[str, str]) -> None:
        self._options = options
        self._topic = options["topic"]
        self._config = _client_config(options)
        self._starting = options.get("startingOffsets", "earliest").lower()
        if self._starting not in ("earliest", "latest"):
            raise ValueError(f"startingOffsets must be earliest or latest, not {self._starting!r}")
        max_records = options.get("maxRecordsPerTrigger", "")
        self._max_records = int(max_records) if max_records else 0
        self._min_records_per_task = int(options.get("minRecordsPerTask", "5000"))
        self._probe: _EndOffsetProbe | None = None
        self._partitions: list[int] = []
        self._partitions_checked = 0.0

    # -- driver side -----------------------------------------------------------------------
    def _probe_consumer(self) -> _EndOffsetProbe:
        if self._probe is None:
            self._probe = _EndOffsetProbe(self._config, self._topic)
        return self._probe

    def _topic_partitions(self, force: bool = False) -> list[int]:
        now = time.monotonic()
        if force or not self._partitions or now - self._partitions_checked > _METADATA_REFRESH_S:
            metadata = self._probe_consumer()._consumer.list_topics(self._topic, timeout=10)
            topic = metadata.topics.get(self._topic)
            if topic is not None and topic.error is None:
                self._partitions = sorted(topic.partitions)
            self._partitions_checked = now
        return self._partitions

    def initialOffset(self) -> dict[str, Any]:
        partitions = self._topic_partitions(force=True)
        if self._starting == "latest":
            probe = self._probe_consumer()
            offsets: dict[int, int] = {}
            for partition in partitions:
                _low, high = probe._consumer.get_watermark_offsets(
                    TopicPartition(self._topic, partition), timeout=10, cached=False
                )
                # Under-reported on Tansu (see module doc), which only means a few records more.
                offsets[partition] = max(high, 0)
            logger.info("starting %s at latest offsets %s", self._topic, offsets)
            return _offset(self._topic, offsets)
        return _offset(self._topic, dict.fromkeys(partitions, 0))

    def latestOffset(self, start: dict[str, Any], limit: ReadLimit) -> dict[str, Any]:
        starts = _partition_offsets(start)
        for partition in self._topic_partitions():
            starts.setdefault(partition, 0)  # a partition added while running: read it from its start
        probe = self._probe_consumer()
        probe.follow(starts)
        available = probe.drain()
        ends = {p: max(starts[p], available.get(p, starts[p])) for p in starts}
        max_rows = self._max_records
        if isinstance(limit, ReadMaxRows):
            max_rows = limit.max_rows
        elif isinstance(limit, ReadAllAvailable):
            max_rows = 0
        if max_rows > 0:
            ends = _cap(starts, ends, max_rows)
        return _offset(self._topic, ends)

    def getDefaultReadLimit(self) -> ReadLimit:
        if self._max_records > 0:
            return ReadMaxRows(self._max_records)
        return ReadAllAvailable()

    def reportLatestOffset(self) -> dict[str, Any] | None:
        if self._probe is None:
            return None
        return _offset(self._topic, dict(self._probe.ends))

    def partitions(self, start: dict[str, Any], end: dict[str, Any]) -> Sequence[InputPartition]:
        """One task for a small batch (each Python task costs tens of ms of overhead, whatever
        it reads), one per Kafka partition once a batch holds ``minRecordsPerTask`` records."""
        starts = _partition_offsets(start)
        ranges = [
            KafkaRange(self._topic, partition, starts.get(partition, 0), stop)
            for partition, stop in sorted(_partition_offsets(end).items())
            if stop > starts.get(partition, 0)
        ]
        if not ranges:
            return []
        if sum(r.size for r in ranges) < self._min_records_per_task:
            return [KafkaRanges(tuple(ranges))]
        return [KafkaRanges((r,)) for r in ranges]

    def commit(self, end: dict[str, Any]) -> None:
        """Nothing to do: progress lives in Spark's checkpoint, not in a consumer group."""

    def stop(self) -> None:
        if self._probe is not None:
            self._probe.close()
            self._probe = None

    # -- executor side ---------------------------------------------------------------------
    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        assert isinstance(partition, KafkaRanges)
        for task in partition.ranges:
            yield read_range(self._config, task)


def _offset(topic: str, offsets: Mapping[int, int]) -> dict[str, Any]:
    return {"topic": topic, "partitions": {str(p): int(o) for p, o in sorted(offsets.items())}}


def _partition_offsets(offset: Mapping[str, Any] | None) -> dict[int, int]:
    if not offset:
        return {}
    return {int(p): int(o) for p, o in dict(offset.get("partitions", {})).items()}


def _cap(starts: Mapping[int, int], ends: Mapping[int, int], max_rows: int) -> dict[int, int]:
    """Share ``max_rows`` across partitions in proportion to their backlog (at least 1 each)."""
    backlog = {p: ends[p] - starts[p] for p in ends}
    total = sum(backlog.values())
    if total <= max_rows:
        return dict(ends)
    capped = {}
    for partition, pending in backlog.items():
        share = max(1, pending * max_rows // total) if pending else 0
        capped[partition] = starts[partition] + min(pending, share)
    return capped


# -- reading, in Python worker processes ------------------------------------------------------
_CONSUMERS: dict[tuple[str, str, int], tuple[Consumer, float]] = {}
_CONSUMERS_LOCK = threading.Lock()
_CONSUMER_IDLE_S = 120.0


def _consumer_for(config: Mapping[str, str], topic: str, partition: int) -> Consumer:
    """This worker process's consumer for one partition (idle ones are closed)."""
    key = (repr(sorted(config.items())), topic, partition)
    now = time.monotonic()
    with _CONSUMERS_LOCK:
        for stale_key, (stale, used) in list(_CONSUMERS.items()):
            if stale_key != key and now - used > _CONSUMER_IDLE_S:
                del _CONSUMERS[stale_key]
                stale.close()
        cached = _CONSUMERS.get(key)
        consumer = cached[0] if cached is not None else None
        if consumer is None:
            consumer = _assigned_consumer(
                config,
                f"cryptopipe-alerting-reader-{os.getpid()}-{uuid.uuid4().hex[:8]}",
                queued_kbytes=16384,
            )
        _CONSUMERS[key] = (consumer, now)
        return consumer


def close_cached_consumers() -> int:
    """Close this process's cached reader consumers; returns how many were open."""
    with _CONSUMERS_LOCK:
        consumers = [consumer for consumer, _used in _CONSUMERS.values()]
        _CONSUMERS.clear()
    for consumer in consumers:
        consumer.close()
    return len(consumers)


def _position(consumer: Consumer, topic: str, partition: int) -> int | None:
    try:
        [tp] = consumer.position([TopicPartition(topic, partition)])
    except KafkaException:
        return None
    return tp.offset if tp.offset >= 0 else None


def read_range(config: Mapping[str, str], task: KafkaRange) -> pa.RecordBatch:
    """Read exactly the records ``[task.start, task.end)`` of one partition as an Arrow batch.

    Spark runs a partition's task in whichever Python worker is free, so a worker's cached
    consumer is often a few batches behind. It keeps fetching in the background, though, so
    skipping forward through its local queue is far cheaper than re-assigning (which throws
    the queue away and costs an offset validation and a fetch: up to 200 ms measured on Tansu).
    """
    consumer = _consumer_for(config, task.topic, task.partition)
    position = _position(consumer, task.topic, task.partition)
    if position is None or position > task.start or task.start - position > _MAX_SKIP:
        start = task.start if task.start >= 0 else OFFSET_BEGINNING
        consumer.assign([TopicPartition(task.topic, task.partition, start)])
        position = task.start
    columns: dict[str, list[Any]] = {name: [] for name in _ARROW_SCHEMA.names}
    cursor = position
    last_progress = time.monotonic()
    while cursor < task.end:
        messages = consumer.consume(num_messages=min(task.end - cursor, 100_000), timeout=1.0)
        if messages:
            last_progress = time.monotonic()
            cursor = _collect(consumer, task, messages, cursor, columns)
        else:
            # Transaction markers or compaction leave gaps: the position moves past them.
            position = _position(consumer, task.topic, task.partition)
            if position is not None and position > cursor:
                cursor = min(position, task.end)
        if cursor < task.end and time.monotonic() - last_progress > _READ_STALL_TIMEOUT_S:
            raise KafkaSourceError(
                f"{task.topic}[{task.partition}]: no progress towards offset {task.end} for "
                f"{_READ_STALL_TIMEOUT_S:.0f}s (stuck at {cursor})"
            )
    return pa.RecordBatch.from_pydict(columns, schema=_ARROW_SCHEMA)


def _records(messages: list[Any]) -> Iterator[Any]:
    """The messages that carry a record: a partition's end is passed over, any other error raised."""
    for message in messages:
        error = message.error()
        if error is None:
            yield message
        elif error.code() != KafkaError._PARTITION_EOF:
            raise KafkaException(error)


def _collect(
    consumer: Consumer, task: KafkaRange, messages: list[Any], cursor: int, columns: dict[str, list[Any]]
) -> int:
    """Append the messages inside the range; returns the offset after the last one taken."""
    for message in _records(messages):
        offset = message.offset()
        if offset is None or offset < cursor:
            continue
        if offset >= task.end:
            # Past the planned range (only after an offset gap): leave it for the next batch.
            consumer.assign([TopicPartition(task.topic, task.partition, task.end)])
            return task.end
        cursor = offset + 1
        if offset >= task.start:
            _append(columns, message.value() or b"", task.partition, offset)
    return cursor


def _append(columns: dict[str, list[Any]], value: bytes, partition: int, offset: int) -> None:
    try:
        trade = decode_trade(value)
    except DecodeError as exc:
        row: tuple[Any, ...] = (None, None, None, None, None, partition, offset, exc.reason)
    else:
        row = (
            trade.symbol,
            trade.trade_id,
            format(trade.price, "f"),
            trade.trade_time_us,
            trade.receive_time_us,
            partition,
            offset,
            None,
        )
    for name, item in zip(_ARROW_SCHEMA.names, row, strict=True):
        columns[name].append(item)
