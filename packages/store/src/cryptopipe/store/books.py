"""The books consumer's sink: ``book-updates`` records into each symbol's book, its top N into Redis.

:class:`BookSink` is a :class:`~cryptopipe.store.sink.Sink` for the one
:class:`~cryptopipe.store.loop.ConsumerLoop`. It keeps every symbol's whole book in memory (a
:class:`~cryptopipe.schemas.book_follow.BookFollower` each), applies a batch's records in order, then
writes each changed symbol's top N once per batch through
:data:`~cryptopipe.store.book_store.BOOK_SCRIPT`, which refuses to move a book back.

A symbol met mid-epoch with no book (the consumer restarted) is rebuilt from its checkpoint
(:class:`~cryptopipe.store.book_rebuild.WarmStart`), and so is one whose updates skip past its book
(this consumer missed records: a rebalance moved the partition away and back); without a checkpoint
of the epoch it waits for the next reset. Every record is counted once: applied, stale or waiting
for a reset (the loop counts the dead letters).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Protocol

import redis
from confluent_kafka import KafkaException

from cryptopipe.observability import metrics as m
from cryptopipe.schemas import BookRecord, BookResetRecord, BookUpdateRecord, continuity, decode_book_record
from cryptopipe.schemas.book_follow import BREAK_REASONS, BookFollower, FollowCounts
from cryptopipe.store.book_rebuild import Rebuilt
from cryptopipe.store.book_store import BOOK_SCRIPT, DEFAULT_BOOK_LEVELS, book_fields, book_keys
from cryptopipe.store.errors import StoreError
from cryptopipe.store.sink import WriteResult, execute_with_scripts

logger = logging.getLogger(__name__)


class WarmStarter(Protocol):
    """Rebuilds, per update (one per symbol), its symbol's book up to just before it; a symbol it
    cannot rebuild is left out."""

    def __call__(self, updates: Sequence[BookUpdateRecord]) -> Mapping[str, Rebuilt]: ...


#: What a warm start came to: the book rebuilt, None (no checkpoint of the epoch), or the failure.
_WarmOutcome = Rebuilt | StoreError | KafkaException | None
#: Warm starts asked for ahead, per symbol: the update asked for and what came of it.
_Warmed = dict[str, tuple[BookUpdateRecord, _WarmOutcome]]


@dataclass(slots=True)
class _Symbol:
    """One symbol's follower, its pending Redis state and its ``symbol`` label value."""

    follower: BookFollower
    label: str
    receive_time_us: int = 0
    dirty: bool = False
    last_written: float | None = None
    warm_tried: bool = False

    def age_s(self) -> float:
        """Seconds since the book was last written to Redis (0 before that)."""
        return 0.0 if self.last_written is None else time.monotonic() - self.last_written


class BookSink:
    """Writes ``book-updates`` into Redis: per symbol the top ``levels`` per side, never backwards."""

    name = "books"

    def __init__(
        self,
        client: redis.Redis,
        *,
        key_prefix: str = "cryptopipe:",
        levels: int = DEFAULT_BOOK_LEVELS,
        warm_start: WarmStarter | None = None,
    ) -> None:
        if levels < 1:
            raise ValueError(f"levels must be >= 1, got {levels}")
        self.client = client
        self.key_prefix = key_prefix
        self.levels = levels
        self.warm_start = warm_start
        self._symbols: dict[str, _Symbol] = {}
        #: The symbols labelled ``other``, whose worst staleness is that label's.
        self._folded: list[_Symbol] = []
        self._taken: list[BookRecord] | None = None
        self._taken_result = (0, 0)

    def decode(self, value: bytes) -> BookRecord:
        return decode_book_record(value)

    def counts(self) -> FollowCounts:
        """Every record taken so far, summed over the symbols."""
        total = FollowCounts()
        for state in self._symbols.values():
            for f in fields(FollowCounts):
                setattr(total, f.name, getattr(total, f.name) + getattr(state.follower.counts, f.name))
        return total

    def book(self, symbol: str) -> BookFollower | None:
        """The follower of ``symbol`` (its live book, epoch and counts), if the sink has met it."""
        state = self._symbols.get(symbol)
        return None if state is None else state.follower

    def write(self, batch: list[BookRecord]) -> WriteResult:
        # The loop retries the very same batch while Redis fails: take its records only once.
        if batch is not self._taken:
            self._taken_result = self._take(batch)
            self._taken = batch
        applied, not_applied = self._taken_result
        pending = [(s, state) for s, state in self._symbols.items() if state.dirty and state.follower.book]
        pipe = self.client.pipeline(transaction=False)
        for symbol, state in pending:
            book, epoch = state.follower.book, state.follower.epoch
            assert book is not None
            values = book_fields(book, self.levels, state.receive_time_us)
            BOOK_SCRIPT.queue(
                pipe, book_keys(self.key_prefix, symbol), [symbol, epoch, book.update_id, *values]
            )
        started = time.perf_counter()
        results = execute_with_scripts(self.client, pipe, [BOOK_SCRIPT]) if pending else []
        redis_seconds = time.perf_counter() - started
        written_us = time.time_ns() // 1000
        self._taken = None
        now = time.monotonic()
        latencies: list[int] = []
        for state in self._symbols.values():
            state.dirty = False
        for (_symbol, state), written in zip(pending, results, strict=True):
            m.BOOK_WRITES.labels(symbol=state.label, result="written" if written else "stale").inc()
            if written:
                if state.last_written is None:
                    staleness = state.age_s if state.label != m.OTHER else self._worst_folded_age_s
                    m.BOOK_STALENESS.labels(symbol=state.label).set_function(staleness)
                state.last_written = now
                latency_us = written_us - state.receive_time_us
                latencies.append(latency_us)
                m.BOOK_LATENCY.labels(symbol=state.label).observe(latency_us / 1e6)
                event_us = state.follower.book.event_time_us if state.follower.book else None
                if event_us is not None:
                    m.BOOK_E2E_LATENCY.labels(symbol=state.label).observe((written_us - event_us) / 1e6)
        return WriteResult(
            written=applied,
            stale=not_applied,
            written_time_us=written_us,
            redis_seconds=redis_seconds,
            latencies_us=latencies,
        )

    def _take(self, batch: list[BookRecord]) -> tuple[int, int]:
        """Apply the batch's records to the books in memory; (applied, stale or waiting) counts."""
        applied = 0
        warmed = self._warm_ahead(batch)
        for record in batch:
            state = self._state(record.symbol)
            follower = state.follower
            if isinstance(record, BookUpdateRecord) and self._needs_warm(state, record):
                self._warm(state, record, warmed)
            breaks = follower.counts.breaks
            outcome = follower.take(record)
            m.BOOK_RECORDS.labels(symbol=state.label, outcome=outcome).inc()
            if follower.counts.breaks != breaks and follower.last_break is not None:
                m.BOOK_BREAKS.labels(symbol=state.label, reason=follower.last_break).inc()
            if outcome != "applied":
                continue
            applied += 1
            if isinstance(record, BookResetRecord):
                m.BOOK_RESETS.labels(symbol=state.label, reason=record.reason).inc()
            if follower.book is not None:
                state.dirty = True
                state.receive_time_us = record.receive_time_us
        return applied, len(batch) - applied

    def _state(self, symbol: str) -> _Symbol:
        state = self._symbols.get(symbol)
        if state is None:
            label = m.symbol_label(symbol)
            state = self._symbols[symbol] = _Symbol(BookFollower(symbol), label)
            # Breaks at 0 from the start: a symbol with none reads 0, not no data (nor folded).
            m.prime(m.BOOK_BREAKS, *({"symbol": label, "reason": r} for r in BREAK_REASONS))
            if label == m.OTHER:
                self._folded.append(state)
        return state

    def _worst_folded_age_s(self) -> float:
        """The ``other`` label's staleness: the largest of the folded symbols' (computed when scraped)."""
        return max(
            (state.age_s() for state in tuple(self._folded) if state.last_written is not None), default=0.0
        )

    def _needs_warm(self, state: _Symbol, update: BookUpdateRecord) -> bool:
        """Whether ``update`` finds the symbol mid-epoch without the records before it: never met
        (a restart), or a live book it does not follow (this consumer skipped records: a rebalance
        moved the partition away and back, or retention dropped them)."""
        follower = state.follower
        if self.warm_start is None:
            return False
        if follower.epoch is None:
            return not state.warm_tried
        if follower.book is None:
            return False  # broken: one warm start was tried when it broke
        return update.epoch > follower.epoch or (
            update.epoch == follower.epoch and continuity(follower.book.update_id, update) == "gap"
        )

    def _warm_ahead(self, batch: list[BookRecord]) -> _Warmed:
        """The warm starts the batch will need at each symbol's first record in it, asked for in
        one go: a restarted consumer meets every symbol mid-epoch at once."""
        if self.warm_start is None:
            return {}
        firsts: dict[str, BookRecord] = {}
        for record in batch:
            firsts.setdefault(record.symbol, record)
        wanted = [
            r
            for s, r in firsts.items()
            if isinstance(r, BookUpdateRecord)
            and self._needs_warm(self._symbols.get(s) or _Symbol(BookFollower(s), s), r)
        ]
        found = self._ask(wanted) if wanted else {}
        return {u.symbol: (u, found[u.symbol]) for u in wanted}

    def _ask(self, updates: list[BookUpdateRecord]) -> dict[str, _WarmOutcome]:
        assert self.warm_start is not None
        try:
            found = self.warm_start(updates)
        except (StoreError, KafkaException) as exc:
            return {u.symbol: exc for u in updates}
        return {u.symbol: found.get(u.symbol) for u in updates}

    def _warm(self, state: _Symbol, update: BookUpdateRecord, warmed: _Warmed) -> None:
        """Rebuild the symbol's book up to just before ``update`` from its checkpoint (asked for
        ahead with the batch's others, unless the book broke within the batch)."""
        state.warm_tried = True
        ahead = warmed.get(update.symbol)
        rebuilt = ahead[1] if ahead is not None and ahead[0] is update else self._ask([update])[update.symbol]
        if isinstance(rebuilt, StoreError | KafkaException):
            m.BOOK_WARM_STARTS.labels(result="failed").inc()
            logger.error(
                "%s: could not rebuild the book from its checkpoint (%s); waiting for a reset",
                update.symbol,
                rebuilt,
            )
            return
        if rebuilt is None or rebuilt.book is None or rebuilt.epoch is None:
            m.BOOK_WARM_STARTS.labels(result="no_checkpoint").inc()
            logger.warning(
                "%s: met mid-epoch with no checkpoint of epoch %d; waiting for a reset",
                update.symbol,
                update.epoch,
            )
            return
        state.follower.adopt(rebuilt.book, rebuilt.epoch)
        m.BOOK_WARM_STARTS.labels(result="rebuilt").inc()
        logger.info(
            "%s: book rebuilt from its checkpoint at update id %d (%d records followed)",
            update.symbol,
            rebuilt.book.update_id,
            rebuilt.counts.taken,
        )
