"""Every Kafka topic the pipeline uses, with its partitioning, in one place."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic's name and the settings ingest creates it with when it is missing.

    Records are keyed by symbol, so one symbol's messages stay ordered on one partition.
    """

    name: str
    partitions: int = 3
    retention_ms: int = 15 * 60 * 1000

    def with_prefix(self, prefix: str) -> TopicSpec:
        """The same topic under a name prefix (tests and multi-tenant clusters)."""
        return TopicSpec(prefix + self.name, self.partitions, self.retention_ms)


PRICES = TopicSpec("prices")
ALERTS = TopicSpec("alerts")
DEAD_LETTERS = TopicSpec("dead-letters", partitions=1, retention_ms=7 * 24 * 3600 * 1000)

ALL_TOPICS: tuple[TopicSpec, ...] = (PRICES, ALERTS, DEAD_LETTERS)
