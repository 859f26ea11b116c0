"""A run's books: what entered the pipeline against what came out, per topic.

Per topic, every record its producer got acknowledged by Kafka must end as exactly one of
``written`` (changed Redis), ``stale`` (older than what Redis held: accounted for) or
``dead_lettered``; the rest is ``unwritten``. The counts are the services' own typed stats
(:class:`~cryptopipe.ingest.IngestStats`, :class:`~cryptopipe.store.LoopStats`), read from the
stats file each wrote at exit, or from its last scrape when it left none (killed, crashed).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from cryptopipe.ingest import IngestStats
from cryptopipe.observability import Scrape
from cryptopipe.observability import metrics as m
from cryptopipe.runtime import read_stats
from cryptopipe.store import LoopStats

if TYPE_CHECKING:
    from cryptopipe.pipeline.pipeline import Pipeline

StatsT = TypeVar("StatsT", IngestStats, LoopStats)


def stats_from(cls: type[StatsT], data: Mapping[str, Any]) -> StatsT | None:
    """``cls`` from a stats file's fields (None when the file held none: the service left no file)."""
    if not data:
        return None
    names = [f.name for f in dataclasses.fields(cls)]
    return cls(**{name: int(data[name]) for name in names if isinstance(data.get(name), int | float)})


def summed(cls: type[StatsT], parts: Iterable[StatsT]) -> StatsT:
    """Several processes' stats as one: every count summed."""
    items = list(parts)
    return cls(**{f.name: sum(getattr(p, f.name) for p in items) for f in dataclasses.fields(cls)})


def ingest_stats(data: Mapping[str, Any], scrape: Scrape) -> IngestStats:
    """Ingest's counts from its final stats file; from its last scrape when it left none."""
    stats = stats_from(IngestStats, data)
    if stats is not None:
        return stats
    return IngestStats(
        received=int(scrape.total(m.TRADES_RECEIVED)),
        backfilled=int(scrape.total(m.BACKFILLED)),
        duplicates=int(scrape.total(m.DUPLICATES)),
        published=int(scrape.total(m.TRADES_PUBLISHED)),
        lost=int(scrape.total(m.TRADES_LOST)),
        unfilled=int(scrape.total(m.UNFILLED)),
    )


def loop_stats(data: Mapping[str, Any], scrape: Scrape, component: str, *, stale_metric: bool) -> LoopStats:
    """A consumer's counts from its final stats file; from its last scrape when it left none."""
    stats = stats_from(LoopStats, data)
    if stats is not None:
        return stats
    handled = int(scrape.total(m.CONSUMED))  # written or stale
    dead = int(scrape.total(m.DEAD_LETTERS, component=component))
    stale = int(scrape.total(m.STALE_PRICES)) if stale_metric else 0
    return LoopStats(
        consumed=handled + dead,
        written=handled - stale,
        stale=stale,
        dead_lettered=dead,
        redelivered=int(scrape.total(m.CONSUMER_REDELIVERED)),
    )


def unaccounted(ingest: IngestStats) -> int:
    """Trades ingest took in that are neither published, duplicates nor counted lost."""
    taken = ingest.received + ingest.backfilled
    return max(0, taken - ingest.duplicates - ingest.published - ingest.lost)


@dataclass(frozen=True, slots=True)
class TopicBooks:
    """One topic's books: what its producers got acknowledged against what its consumers did.

    ``surplus`` is records the consumers handled that this run's producers did not publish (a
    backlog an earlier run left on a configured broker). Counts cannot tell it from unwritten
    records when both happen, so a surplus offsets as many; it is reported so that it gets a look.
    """

    topic: str
    published: int
    handled: LoopStats = field(default_factory=LoopStats)

    @property
    def accounted(self) -> int:
        return self.handled.written + self.handled.stale + self.handled.dead_lettered

    @property
    def unwritten(self) -> int:
        return max(0, self.published - self.accounted)

    @property
    def surplus(self) -> int:
        return max(0, self.accounted - self.published)

    def as_dict(self) -> dict[str, int]:
        return {
            "published": self.published,
            **dataclasses.asdict(self.handled),
            "unwritten": self.unwritten,
            "surplus": self.surplus,
        }


@dataclass(frozen=True, slots=True)
class Books:
    """A run's reconciliation: ingest's counts and one :class:`TopicBooks` per consumed topic.

    With several ingest shards or consumers, ``ingest`` and the topics' books are the sums;
    ``shards`` and ``consumers`` keep each process's share (``ingest_by_shard`` and
    ``prices_by_consumer`` in :meth:`as_dict`).
    """

    ingest: IngestStats
    topics: Mapping[str, TopicBooks] = field(default_factory=dict)
    shards: Mapping[str, IngestStats] = field(default_factory=dict)
    """Each ingest shard's stats, by service name (``ingest``, ``ingest-2``, ...)."""
    consumers: Mapping[str, Mapping[str, LoopStats]] = field(default_factory=dict)
    """Per topic, each consumer-group member's stats by service name."""

    @property
    def unwritten(self) -> int:
        """Records published to any topic and never accounted for in Redis."""
        return sum(books.unwritten for books in self.topics.values())

    @property
    def lost(self) -> int:
        """Trades ingest took in that never reached Redis: counted lost in ingest, in stream gaps
        never backfilled, unaccounted for in ingest, or published and never written."""
        prices = self.topics.get("prices")
        unwritten = prices.unwritten if prices else 0
        return self.ingest.lost + self.ingest.unfilled + unaccounted(self.ingest) + unwritten

    @property
    def balanced(self) -> bool:
        return self.unwritten == 0 and unaccounted(self.ingest) == 0

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "balanced": self.balanced,
            "ingest": _ingest_dict(self.ingest),
            **{name: books.as_dict() for name, books in self.topics.items()},
        }
        if self.shards:
            out["ingest_by_shard"] = {name: _ingest_dict(stats) for name, stats in self.shards.items()}
        for topic, members in self.consumers.items():
            out[f"{topic}_by_consumer"] = {name: dataclasses.asdict(s) for name, s in members.items()}
        return out

    def line(self) -> str:
        """One line: the figures when the books balance, else what is missing and where."""
        return balanced_line(self) if self.balanced else unbalanced_line(self)


def _ingest_dict(stats: IngestStats) -> dict[str, int]:
    return {**dataclasses.asdict(stats), "unaccounted": unaccounted(stats)}


def unbalanced_line(books: Books) -> str:
    missing = []
    ingest = books.ingest
    if unaccounted(ingest):
        missing.append(
            f"{unaccounted(ingest)} of {ingest.received + ingest.backfilled} trades ingest took in were "
            "neither published, duplicates nor counted lost (ingest)"
        )
    for name, topic in books.topics.items():
        if topic.unwritten:
            what = {"prices": "trades", "book-updates": "book records"}.get(name, name)
            missing.append(
                f"{topic.unwritten} of {topic.published} published {what} were never "
                f"written to Redis ({name} topic)"
            )
    return "BOOKS DO NOT BALANCE: " + "; ".join(missing)


def balanced_line(books: Books) -> str:
    parts: list[str] = []
    for name, topic in books.topics.items():
        done = topic.handled
        accounted = f"{done.written} written + {done.stale} stale + {done.dead_lettered} dead-lettered"
        if name == "prices":
            gaps = books.ingest.unfilled
            gap_note = f" ({gaps} in stream gaps never backfilled)" if gaps else ""
            parts.insert(
                0,
                f"{books.ingest.received} trades received, {topic.published} published = {accounted}, "
                f"{books.lost} lost{gap_note} (prices topic)",
            )
        elif name == "alerts":
            # Spark and the express lane each publish every alert; the second copy to arrive finds
            # the first in Redis. That is the design working, not staleness.
            parts.append(
                f"{topic.published} alerts published = {done.written} written + {done.stale} second copies "
                f"(Spark's and the express lane's) + {done.dead_lettered} dead-lettered (alerts topic)"
            )
        else:
            what = "book records" if name == "book-updates" else name
            parts.append(f"{topic.published} {what} published = {accounted} ({name} topic)")
    surplus = sum(topic.surplus for topic in books.topics.values())
    if surplus:
        parts.append(f"{surplus} records from before this run also consumed")
    return "books balance: " + "; ".join(parts or ["nothing published"])


#: The book record kinds that go to book-updates (checkpoints go to book-snapshots).
BOOK_KINDS = ("reset", "update")


def book_records_published(pipeline: Pipeline) -> int | None:
    """The book records (resets and updates) every ingest shard got acknowledged on book-updates,
    from their final figures (None when one of them left none)."""
    final = pipeline.state.final
    shards = pipeline.members("ingest")
    if not shards or any(name not in final for name in shards):
        return None
    counts = (
        final[name].total(m.BOOK_RECORDS_PUBLISHED, kind=kind) for name in shards for kind in BOOK_KINDS
    )
    return int(sum(counts))


def alerts_published_by(alerting: Scrape) -> int:
    """Alerts the alerting job put on the alerts topic: the Spark query's and the express lane's
    (which publishes the same alerts first; the alerts consumer counts the second copy stale)."""
    return int(alerting.total(m.ALERTING_ALERTS) + alerting.total(m.ALERTING_EXPRESS_ALERTS))


def _with_earlier_life(stats: LoopStats, handled_before: int) -> LoopStats:
    """A consumer's stats with what its killed predecessor handled up to its group's last commit
    (``RunState.handled_before``; those figures died with it), counted as written."""
    if not handled_before:
        return stats
    return dataclasses.replace(
        stats, consumed=stats.consumed + handled_before, written=stats.written + handled_before
    )


def books_of(pipeline: Pipeline) -> Books:
    """A drained run's books, from the services' final stats files (scrapes as a fallback),
    summed over the ingest shards and over each group's consumers (prices, books)."""
    state = pipeline.state
    final, files = state.final, state.stats_files

    def last(name: str) -> Scrape:
        return final.get(name, Scrape([]))

    shards = {
        name: ingest_stats(read_stats(files.get(name)), last(name))
        for name in pipeline.members("ingest") or ["ingest"]
    }
    ingest = summed(IngestStats, shards.values())
    topics: dict[str, TopicBooks] = {}
    consumers: dict[str, dict[str, LoopStats]] = {}
    readers = (
        ("prices", "prices-consumer", ingest.published, True),
        ("book-updates", "books-consumer", book_records_published(pipeline) or 0, False),
    )
    for topic, component, published, stale_metric in readers:
        members = [n for n in pipeline.members(component) if n in state.services]
        if not members:
            continue
        consumers[topic] = {
            name: _with_earlier_life(
                loop_stats(read_stats(files.get(name)), last(name), component, stale_metric=stale_metric),
                state.handled_before.get(name, 0),
            )
            for name in members
        }
        topics[topic] = TopicBooks(topic, published, summed(LoopStats, consumers[topic].values()))
    if "alerts-consumer" in state.services and "alerting" in state.services:
        handled = loop_stats(
            read_stats(files.get("alerts-consumer")),
            last("alerts-consumer"),
            "alerts-consumer",
            stale_metric=False,
        )
        topics["alerts"] = TopicBooks("alerts", alerts_published_by(last("alerting")), handled)
    return Books(ingest, topics, shards=shards, consumers=consumers)
