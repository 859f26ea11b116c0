"""Order books through a fault: each symbol's book in Redis against the exchange's own, polled
while the scenario runs, and afterwards the resyncs read back from ``book-updates`` and the
``book-updates`` books (see docs/faults.md, "Order books")."""

from __future__ import annotations

import contextlib
import time
import urllib.parse
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import redis as redis_lib

from cryptopipe.measure.bench_books import book_records, check_against_kafka
from cryptopipe.measure.faults.monitor import rest_json
from cryptopipe.measure.faults.poller import Poller
from cryptopipe.observability import Scrape
from cryptopipe.observability import metrics as m
from cryptopipe.pipeline import Books, TopicBooks
from cryptopipe.schemas import KafkaSettings, Level
from cryptopipe.schemas.book_messages import BookResetRecord, BookUpdateRecord
from cryptopipe.schemas.topics import BOOK_UPDATES
from cryptopipe.store import BookStore


def _levels(rows: Sequence[Sequence[str]]) -> tuple[Level, ...]:
    return tuple((Decimal(price), Decimal(quantity)) for price, quantity in rows)


Levels = tuple[tuple[Level, ...], tuple[Level, ...]]


class BookWatch(Poller):
    """Polls, on a thread, each symbol's book in Redis and the exchange's (``GET /api/v3/depth``),
    and tells when Redis held exactly the exchange's book: the same top ``levels`` levels per side
    as the exchange showed at the same update id.

    The exchange answers at its current id only, and Redis is behind it by the pipeline's latency,
    so the watch keeps every book the exchange showed, by update id, and compares each book seen in
    Redis with the exchange's at that id whenever the watch saw it there too (not at the same
    moment). A book seen in Redis whose id the exchange was never seen at tells nothing either way.
    """

    def __init__(
        self,
        rest_url: str,
        symbols: Sequence[str],
        redis_url: str,
        key_prefix: str,
        levels: int,
        interval: float,
    ) -> None:
        super().__init__(redis_url, interval, "faults-book-watch")
        self.rest_url = rest_url
        self.symbols = [s.upper() for s in symbols]
        self.levels = levels
        #: Per symbol, per poll: (monotonic time, update id, levels) of the book in Redis.
        self.in_redis: dict[str, list[tuple[float, int, Levels]]] = {s: [] for s in self.symbols}
        #: Per symbol, per poll: (monotonic time, the exchange's update id then).
        self.exchange_ids: dict[str, list[tuple[float, int]]] = {s: [] for s in self.symbols}
        #: Per symbol: the exchange's book at each update id the watch saw it at.
        self.exchange: dict[str, dict[int, Levels]] = {s: {} for s in self.symbols}
        self._store = BookStore(self._client, key_prefix)

    def poll(self, symbol: str) -> None:
        """One look at ``symbol``'s book in Redis, then at the exchange's (either may not answer)."""
        with contextlib.suppress(redis_lib.RedisError):
            view = self._store.book(symbol, self.levels)
            if view is not None:
                self.in_redis[symbol].append((time.monotonic(), view.update_id, (view.bids, view.asks)))
        query = urllib.parse.urlencode({"symbol": symbol, "limit": self.levels})
        with contextlib.suppress(OSError, ValueError, KeyError):
            depth = rest_json(f"{self.rest_url}/api/v3/depth?{query}")
            update_id = int(depth["lastUpdateId"])
            self.exchange[symbol][update_id] = (_levels(depth["bids"]), _levels(depth["asks"]))
            self.exchange_ids[symbol].append((time.monotonic(), update_id))

    def tick(self, started: float) -> None:
        for symbol in self.symbols:
            self.poll(symbol)

    def _verdicts(self, symbol: str) -> list[tuple[float, int, bool]]:
        """(time, update id, equal) for each book seen in Redis at an id the exchange was seen at."""
        known = self.exchange[symbol]
        return [(t, i, known[i] == levels) for t, i, levels in list(self.in_redis[symbol]) if i in known]

    def exact_after(self, since: float) -> dict[str, float | None]:
        """Per symbol, seconds from ``since`` until Redis was first seen holding the exchange's
        book at an id at least the exchange's when ``since`` passed (caught up past the fault);
        None: never."""
        out: dict[str, float | None] = {}
        for symbol in self.symbols:
            then = next((i for t, i in list(self.exchange_ids[symbol]) if t >= since), None)
            out[symbol] = None
            if then is None:
                continue
            found = (t for t, i, equal in self._verdicts(symbol) if t >= since and i >= then and equal)
            first = next(found, None)
            out[symbol] = None if first is None else round(max(0.0, first - since), 2)
        return out

    def ever_exact_before(self, until: float) -> bool:
        """Whether every symbol's book was seen exact at least once before ``until`` (the check
        itself works on this run)."""
        return all(any(equal for t, _, equal in self._verdicts(s) if t < until) for s in self.symbols)

    def mismatches(self) -> int:
        """Books seen in Redis that differed from the exchange's at the same update id (never 0
        but for a wrong book)."""
        return sum(1 for s in self.symbols for _, _, equal in self._verdicts(s) if not equal)

    def compared(self) -> int:
        """Books seen in Redis that were compared with the exchange's at the same update id."""
        return sum(len(self._verdicts(s)) for s in self.symbols)


@dataclass
class BookCosts:
    """What a fault cost the order books, and whether they came back exact and balanced."""

    resyncs: int = 0
    """Resets published to ``book-updates`` after the fault began (each a counted resync)."""
    resyncs_by_reason: dict[str, int] = field(default_factory=dict)
    resets_published: int = 0
    """Every reset in ``book-updates``, the run's first syncs included."""
    exact_after_s: float | None = None
    """Seconds from the fault's end until every symbol's book in Redis was the exchange's again."""
    exact_after_by_symbol: dict[str, float | None] = field(default_factory=dict)
    exact_before_fault: bool = False
    """Every book was seen exact before the fault (the scenario waits for it while the first 60 %
    of the tape plays; a pipeline far behind on a loaded machine may not get there)."""
    compared: int = 0
    """Books seen in Redis compared with the exchange's at the same update id during the run."""
    mismatches: int = 0
    """Of them, books that differed (a wrong book in Redis)."""
    books_exact: bool = False
    """At the end, every book in Redis equals the book rebuilt from Kafka alone at its id."""
    books_checked: int = 0
    kafka_differences: list[str] = field(default_factory=list)
    """How a book in Redis differed from the book rebuilt from Kafka, per symbol that did."""
    breaks: int = 0
    """Books the books consumer gave up until a reset (``cryptopipe_book_breaks_total``)."""
    resets_applied: dict[str, int] = field(default_factory=dict)
    """Resets the books consumer applied, by reason (``cryptopipe_book_resets_applied_total``)."""
    ingest: dict[str, int] = field(default_factory=dict)
    """The ingest process running at the end: its book figures (resyncs, snapshots, events...)."""
    reconciliation: dict[str, int] = field(default_factory=dict)
    """``book-updates``: published (acknowledged, every ingest process), consumed and its split,
    unwritten, surplus, and ``redelivered``: records the books consumer handled a second time."""
    consumer_recoveries: dict[str, int] = field(default_factory=dict)
    """Why the books consumer may have read records again: its failed commits and stall
    recoveries (seek, recreate), from its final figures."""
    killed_ingest_records: int = 0
    """Records in ``book-updates`` from an ingest process killed during the run (its epochs)."""
    warm_starts: dict[str, int] = field(default_factory=dict)
    """The (last) books consumer's symbols met mid-epoch with no book in memory, by result:
    ``rebuilt`` from their checkpoint and the updates after it (a restarted consumer)."""
    killed_consumer_records: int = 0
    """Records a books consumer killed during the run handled up to its last commit (its figures
    died with it; the restarted one took up from there): ``books_of`` counts them as written."""
    events_unaccounted: int = 0
    """Depth events the final ingest took in that are neither applied, skipped, in a resync gap
    nor buffered."""
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k != "problems"}


def _resyncs(resets: Sequence[BookResetRecord], since_us: int) -> Counter[str]:
    return Counter(r.reason for r in resets if r.receive_time_us >= since_us)


def book_costs(
    kafka: KafkaSettings,
    redis_url: str,
    key_prefix: str,
    books: Books,
    consumer: Scrape,
    *,
    fault_start_us: int,
    watch: BookWatch,
    fault_start: float,
    fault_end: float,
    killed_before_us: int | None = None,
    consumer_handled_before: int = 0,
) -> BookCosts:
    """The books after a drained run: resyncs since ``fault_start_us`` (wall clock, µs) read back
    from ``book-updates``, the books consumer's breaks and resets, the book in Redis against the
    book rebuilt from Kafka, and the ``book-updates`` books. ``killed_before_us``: an ingest
    process was killed then; its records are the topic's records of epochs below it (a producer's
    epochs start at its wall clock), and its acknowledgements died with it, so the topic says what
    it published. ``consumer_handled_before``: records a killed books consumer handled up to its
    last commit. ``watch`` saw the books in Redis against the exchange's (monotonic times)."""
    exact_after = watch.exact_after(fault_end)
    costs = BookCosts(
        exact_after_by_symbol=exact_after,
        exact_before_fault=watch.ever_exact_before(fault_start),
        compared=watch.compared(),
        mismatches=watch.mismatches(),
    )
    found = list(exact_after.values())
    costs.exact_after_s = None if not found or None in found else max(v for v in found if v is not None)
    records = book_records(kafka, BOOK_UPDATES.with_prefix(kafka.topic_prefix).name)
    resets = [r for r in records if isinstance(r, BookResetRecord)]
    reasons = _resyncs(resets, fault_start_us)
    costs.resyncs, costs.resyncs_by_reason = sum(reasons.values()), dict(sorted(reasons.items()))
    costs.resets_published = len(resets)
    costs.books_checked, costs.kafka_differences = kafka_differences(kafka, redis_url, key_prefix)
    costs.books_exact = costs.books_checked > 0 and not costs.kafka_differences
    costs.breaks = int(consumer.total(m.BOOK_BREAKS))
    costs.resets_applied = _by_label(consumer, m.BOOK_RESETS, "reason")
    costs.warm_starts = _by_label(consumer, m.BOOK_WARM_STARTS, "result")
    _ingest_figures(costs, books)
    topic = books.topics.get("book-updates")
    if topic is None:
        costs.problems.append("no books consumer ran: the book-updates books cannot be read")
        return costs
    _balance(costs, topic, records, consumer, killed_before_us, consumer_handled_before)
    costs.problems += _book_problems(costs)
    return costs


def _balance(
    costs: BookCosts,
    topic: TopicBooks,
    records: Sequence[BookResetRecord | BookUpdateRecord],
    consumer: Scrape,
    killed_before_us: int | None,
    consumer_handled_before: int,
) -> None:
    """The ``book-updates`` books, with a killed ingest's share read from the topic."""
    if killed_before_us is not None:
        costs.killed_ingest_records = sum(1 for r in records if r.epoch < killed_before_us)
        survivor = len(records) - costs.killed_ingest_records
        if survivor != topic.published:
            costs.problems.append(
                f"the restarted ingest counted {topic.published} book records acknowledged, "
                f"book-updates holds {survivor} of its epochs"
            )
        topic = TopicBooks(topic.topic, topic.published + costs.killed_ingest_records, topic.handled)
    # A killed books consumer's records up to its last commit are in ``topic`` already
    # (``books_of`` adds ``RunState.handled_before``); reported here.
    costs.killed_consumer_records = consumer_handled_before
    # A record the books consumer read a second time (it resumed from its last committed offset:
    # a commit failed while the broker was away, or a stall recovery sought back) is handled twice
    # and shows as surplus. The loop counts these itself (``redelivered``: at or below an offset it
    # had already handled), and only a surplus beyond them is a problem.
    costs.reconciliation = topic.as_dict()
    costs.consumer_recoveries = {
        "commit_failed": int(consumer.total(m.ERRORS, reason="commit_failed")),
        **_by_label(consumer, m.CONSUMER_STALL_RECOVERIES, "action"),
    }


def kafka_differences(kafka: KafkaSettings, redis_url: str, key_prefix: str) -> tuple[int, list[str]]:
    """Each symbol's book in Redis against the book rebuilt from Kafka alone at its update id
    (:func:`~cryptopipe.measure.bench_books.check_against_kafka`): how many were checked, and how
    each that differs does."""
    check = check_against_kafka(kafka, redis_url, key_prefix)
    return check.checked, check.differences


_INGEST_FIGURES = (
    "book_events",
    "book_events_applied",
    "book_events_skipped",
    "book_events_in_resync_gap",
    "book_events_buffered",
    "book_resyncs",
    "book_snapshots_used",
    "book_records_lost",
)


def _ingest_figures(costs: BookCosts, books: Books) -> None:
    """The final ingest's book figures, and the depth events it cannot account for."""
    stats = books.ingest
    costs.ingest = {name: getattr(stats, name) for name in _INGEST_FIGURES}
    costs.events_unaccounted = stats.book_events - (
        stats.book_events_applied
        + stats.book_events_skipped
        + stats.book_events_in_resync_gap
        + stats.book_events_buffered
    )


def _by_label(scrape: Scrape, series: Any, label: str) -> dict[str, int]:
    out: Counter[str] = Counter()
    for sample in scrape.samples(series):
        out[sample.labels.get(label, "")] += int(sample.value)
    return {k: v for k, v in sorted(out.items()) if v}


def _book_problems(costs: BookCosts) -> list[str]:
    problems = []
    books = costs.reconciliation
    if books.get("unwritten") or books.get("surplus") != books.get("redelivered"):
        problems.append(
            f"book-updates does not balance: {books.get('published')} published, "
            f"{books.get('unwritten')} unwritten, {books.get('surplus')} surplus, "
            f"{books.get('redelivered')} read again"
        )
    if books.get("redelivered") and not sum(costs.consumer_recoveries.values()):
        problems.append(
            f"the books consumer read {books['redelivered']} records again with no failed commit "
            "or stall recovery to explain it"
        )
    if costs.mismatches:
        problems.append(
            f"{costs.mismatches} of {costs.compared} books seen in Redis differed from the exchange's"
        )
    if not costs.compared:
        problems.append("no book seen in Redis was compared with the exchange's: nothing was checked")
    if not costs.books_exact:
        problems.append(
            f"a book in Redis is not the book rebuilt from Kafka ({costs.books_checked} checked): "
            + "; ".join(costs.kafka_differences)
        )
    if costs.exact_after_s is None:
        problems.append(f"a book never matched the exchange's after the fault: {costs.exact_after_by_symbol}")
    if costs.events_unaccounted:
        problems.append(f"{costs.events_unaccounted} depth events ingest took in are not accounted for")
    if costs.ingest.get("book_records_lost"):
        problems.append(f"ingest gave up {costs.ingest['book_records_lost']} book records")
    return problems
