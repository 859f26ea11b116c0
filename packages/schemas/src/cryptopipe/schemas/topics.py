"""Every Kafka topic the pipeline uses, with its partitioning, in one place.

Partitioning rule
-----------------
``prices`` and ``alerts`` records are keyed by the upper-case symbol as ASCII bytes
(``encode_key("BTCUSDT") == b"BTCUSDT"``), and a keyed record goes to partition
``(murmur2(key) & 0x7fffffff) % partitions``: the Java client's default partitioner
(``org.apache.kafka.common.utils.Utils.murmur2``). Our producers get it from librdkafka with
``"partitioner": "murmur2_random"`` (:data:`PARTITIONER`); librdkafka's own default
(``consistent_random``, CRC32) would put the same key elsewhere. With the same rule and the same
partition count, a Java producer, Kafka Streams or Spark writing by symbol lands on the same
partition as we do (co-partitioned), and :func:`java_partition` tells which one in advance.

``prices`` and ``alerts`` have :data:`DEFAULT_PARTITIONS` = 4 partitions. With 3 (the old count),
BTCUSDT and ETHUSDT, the default symbols, both hash to partition 2 and one consumer of a group
would do all the work. With 4, BTCUSDT → 2, ETHUSDT → 1, BNBUSDT → 3, XRPUSDT → 0 (SOLUSDT → 1
shares with ETHUSDT). 8 would give each of those five a partition of its own (2, 5, 7, 1, 0), but
every partition costs the Spark alert job a task per micro-batch, and Spark's real-time mode a
core (thread) for as long as the query runs: on the 2-core machines this pipeline targets, 4 is
the better trade. Scale-out deployments create the topics with more (``INGEST_TOPIC_PARTITIONS``;
8 keeps the five apart). Both topics share the count, so one symbol's trades and alerts have the
same partition number. An existing topic keeps the count it was created with; adding partitions
later moves keys to other partitions.

``book-updates`` and ``book-snapshots`` are keyed and partitioned the same way, with the same
count, so a symbol's checkpoint and its updates have the same partition number.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

#: librdkafka's name for the Java client's default partitioner (murmur2 of the key; random when
#: there is no key). Every producer of keyed ``prices``/``alerts`` records must set it.
PARTITIONER = "murmur2_random"

#: Partitions of ``prices`` and ``alerts`` (see the module docstring for why 4).
DEFAULT_PARTITIONS = 4

_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(key: bytes) -> int:
    """Kafka's ``Utils.murmur2(byte[])``: 32-bit MurmurHash2, seed 0x9747b28c, as a signed int."""
    length = len(key)
    h = (0x9747B28C ^ length) & _MASK
    tail = length & ~3
    for i in range(0, tail, 4):
        k = int.from_bytes(key[i : i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    rest = length & 3
    if rest == 3:
        h ^= key[tail + 2] << 16
    if rest >= 2:
        h ^= key[tail + 1] << 8
    if rest >= 1:
        h ^= key[tail]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def java_partition(key: bytes, partitions: int) -> int:
    """The partition a Java producer (and ours, with :data:`PARTITIONER`) picks for ``key``."""
    if partitions < 1:
        raise ValueError(f"partitions must be >= 1, got {partitions}")
    return (murmur2(key) & 0x7FFFFFFF) % partitions


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic's name and the settings ingest creates it with when it is missing.

    Records are keyed by symbol, so one symbol's messages stay ordered on one partition, chosen
    by :func:`java_partition` (see the module docstring).
    """

    name: str
    partitions: int = DEFAULT_PARTITIONS
    retention_ms: int = 15 * 60 * 1000
    cleanup_policy: Literal["delete", "compact"] = "delete"
    """``compact`` keeps the latest record of each key (``book-snapshots``); ``retention_ms`` then
    does not apply."""

    def with_prefix(self, prefix: str) -> TopicSpec:
        """The same topic under a name prefix (tests and multi-tenant clusters)."""
        return replace(self, name=prefix + self.name)

    def config(self) -> dict[str, str]:
        """The topic configs to create it with (``retention.ms``, ``cleanup.policy``)."""
        if self.cleanup_policy == "compact":
            return {"cleanup.policy": "compact"}
        return {"retention.ms": str(self.retention_ms), "cleanup.policy": "delete"}


PRICES = TopicSpec("prices")
ALERTS = TopicSpec("alerts")
DEAD_LETTERS = TopicSpec("dead-letters", partitions=1, retention_ms=7 * 24 * 3600 * 1000)

#: Per symbol, in order: the order book's resets and updates (:mod:`cryptopipe.schemas.book_messages`).
BOOK_UPDATES = TopicSpec("book-updates")
#: Compacted: each symbol's latest book checkpoint, pointing into ``book-updates`` (same partition number).
BOOK_SNAPSHOTS = TopicSpec("book-snapshots", retention_ms=-1, cleanup_policy="compact")

ALL_TOPICS: tuple[TopicSpec, ...] = (PRICES, ALERTS, DEAD_LETTERS, BOOK_UPDATES, BOOK_SNAPSHOTS)
