"""What a fault scenario is told and what it reports: its settings, the servers it runs on, its result."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptopipe.infra import (
    KafkaCluster,
    KafkaEndpoint,
    RedisEndpoint,
    TcpProxy,
)

SCENARIOS: tuple[str, ...] = (
    "leader-kill",
    "broker-restart",
    "network-cut",
    "redis-restart",
    "consumer-kill",
    "ingest-kill",
)
"""Scenario names, in the order the benchmark runs them."""

ROW_FIELDS = (
    "fault",
    "offered",
    "written",
    "lost",
    "duplicated",
    "recovery_s",
    "lost_in_outage",
    "book_resyncs",
    "book_exact_after_s",
)

CONSUMER = "prices-consumer"
BOOKS_CONSUMER = "books-consumer"
INGEST = "ingest"
HISTORY_MARGIN = 1000
REST_PAGE = 1000


class ScenarioError(RuntimeError):
    """A scenario could not run to the end (a service died, a server is not the right kind)."""


@dataclass(frozen=True)
class FaultConfig:
    """How hard and how long: the offered rate, the stream's length and the fault's length."""

    rate: float = 1000.0
    """Offered trades per second, all symbols together (steady Poisson arrivals)."""
    duration: float = 30.0
    """Seconds of trades the exchange plays; it offers ``rate * duration`` trades in all."""
    outage: float = 10.0
    """How long each fault lasts before it is healed (the network cut, the time a process is down)."""
    fault_at: float = 0.25
    """When the fault starts, as a fraction of ``duration`` after the first trade (at least 2 s)."""
    symbols: tuple[str, ...] = ("btcusdt", "ethusdt")
    seed: int = 1
    settle_timeout: float = 60.0
    """Give up waiting for the pipeline to catch up after this long without any progress."""
    poll_interval: float = 0.1
    depth: bool = False
    """Order books too (``up --depth 100ms``): the exchange plays a synthetic book, ingest keeps it
    in sync, the books consumer writes it to Redis; each scenario then also says what the fault
    cost the books (resyncs, seconds to an exact book) and checks they balance."""

    @property
    def count(self) -> int:
        return max(1, round(self.rate * self.duration))

    @property
    def fault_delay(self) -> float:
        return max(2.0, self.fault_at * self.duration)


@dataclass
class Servers:
    """What a scenario runs on. ``proxy`` (network-cut) must be what ``kafka`` points at;
    ``cluster`` is needed by leader-kill; ``kafka.server`` by broker-restart; ``redis.server``
    (a :class:`RedisServer` with ``appendonly``) by redis-restart."""

    kafka: KafkaEndpoint
    redis: RedisEndpoint
    proxy: TcpProxy | None = None
    cluster: KafkaCluster | None = None


@dataclass
class ScenarioResult:
    """One scenario's counts; :meth:`row` has the benchmark's fields, the rest is detail."""

    fault: str
    offered: int
    written: int
    lost: int
    duplicated: int
    recovery_s: float | None
    lost_in_outage: int = 0
    """Of ``lost``: trades that went with the killed ingest or were played while no ingest was
    subscribed (ingest-kill only; see docs/faults.md), one run of consecutive ids per symbol."""
    book_resyncs: int | None = None
    """Resets in ``book-updates`` after the fault began (None without books)."""
    book_exact_after_s: float | None = None
    """Seconds from the fault's end until every book in Redis was the exchange's again."""
    books: dict[str, Any] | None = None
    """What the fault cost the books, in full (:class:`~cryptopipe.measure.faults.books.BookCosts`)."""
    published: int = 0
    """Distinct offered trades found in the prices topic."""
    topic_duplicates: int = 0
    redis_duplicates: int = 0
    fault_s: float = 0.0
    """How long the fault lasted, injection to healed (restarts included)."""
    detail: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.lost == self.lost_in_outage and self.duplicated == 0 and not self.problems

    def row(self) -> dict[str, Any]:
        """The benchmark's row: :data:`ROW_FIELDS`, and the books' costs in full when there are books."""
        row = {name: getattr(self, name) for name in ROW_FIELDS}
        if self.books is not None:
            row["books"] = self.books
        return row


Progress = Callable[[str], None]


def stderr_progress(prefix: str = "faults") -> Progress:
    def emit(text: str) -> None:
        print(f"{prefix}: {text}", file=sys.stderr, flush=True)

    return emit
