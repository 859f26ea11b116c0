"""Every subscribed symbol's order book, kept in sync and published to the order-book contract.

:class:`Books` feeds each symbol's diff events and REST snapshots to its
:class:`~cryptopipe.ingest.book.BookSync` and turns what it answers into Kafka records
(:mod:`cryptopipe.schemas.book_messages`, docs/order-books.md): a ``reset`` when a book is built from
a snapshot (a new epoch), an ``update`` per applied diff, on ``book-updates``; a ``checkpoint`` on the
compacted ``book-snapshots`` after each reset and every ``INGEST_BOOK_CHECKPOINT_INTERVAL_S``, pointing
at the ``book-updates`` offset to resume from (known once the broker acknowledged the record before it).
A book record that cannot be delivered breaks the book for consumers, so its symbol is resynced.

bookTicker frames are a live check, not published: where a ticker's update id equals the book's,
best bid and ask must be the ticker's (``cryptopipe_ingest_book_ticker_checks``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import aiohttp
from confluent_kafka import KafkaError, Message

from cryptopipe.ingest.book import (
    Applied,
    BookReset,
    BookSync,
    Buffered,
    Dropped,
    ResyncStarted,
    SnapshotIgnored,
    SnapshotNeeded,
    SyncOutput,
)
from cryptopipe.ingest.book.weight import WeightBudget
from cryptopipe.ingest.publisher import IngestStats, Publisher, loss_reason
from cryptopipe.ingest.settings import IngestSettings
from cryptopipe.ingest.snapshots import SnapshotQueue
from cryptopipe.observability import metrics as m
from cryptopipe.runtime import RateLimitedLog
from cryptopipe.schemas import BookTicker, DepthDiff, DepthSnapshot, OrderBook, encode_key
from cryptopipe.schemas.book_messages import (
    BookCheckpoint,
    BookRecordType,
    BookResetRecord,
    BookUpdateRecord,
    encode_book,
    epoch_base,
)

logger = logging.getLogger(__name__)

#: bookTickers kept per symbol while they wait for the book to reach their update id.
MAX_PENDING_TICKERS = 256
_RESYNC_REASONS = ("gap", "stale_snapshot", "crossed", "requested")


def _now_us() -> int:
    return time.time_ns() // 1000


def whole(book: OrderBook) -> DepthSnapshot:
    """Every level of ``book``, best first (a reset's or a checkpoint's levels)."""
    return book.top(len(book))


@dataclass(eq=False)
class _Symbol:
    """One symbol's sync machine and what the contract needs around it."""

    sync: BookSync
    epoch: int
    #: Label of the next reset: ``initial``, then the reason of the resync that led to it.
    reset_reason: str = "initial"
    #: Receive times of diffs waiting in the sync's buffer, by final update id.
    receive_times: dict[int, int] = field(default_factory=dict)
    #: bookTickers ahead of the book, by update id.
    tickers: dict[int, BookTicker] = field(default_factory=dict)
    last_checkpoint: float = 0.0
    #: The sync's ``buffered`` and ``buffer_gaps`` counters as last added to the totals.
    counted_buffered: int = 0
    counted_buffer_gaps: int = 0
    #: Whether the book was live when last counted in the ``books{state}`` gauge.
    live: bool = False


def prime_book_metrics(symbols: Iterable[str]) -> None:
    """The order-book series at 0 for every label an event may give, books kept or not: a run
    without books then reads 0 books and 0 events on the dashboards, rather than no data."""
    m.prime(
        m.BOOK_EVENTS, *({"outcome": o} for o in ("applied", "skipped_older_than_snapshot", "in_resync_gap"))
    )
    m.prime(m.BOOK_TICKER_CHECKS, *({"result": r} for r in ("match", "mismatch", "unchecked")))
    labels = m.symbol_labels(s.upper() for s in symbols)
    m.prime(m.BOOK_RESYNCS, *({"symbol": label, "reason": r} for label in labels for r in _RESYNC_REASONS))
    m.prime(m.BOOK_GAPS, {"where": "live"}, {"where": "buffer"})
    m.prime(m.BOOKS, {"state": "live"}, {"state": "syncing"})
    results = ("used", "stale", "ignored", "rate_limited", "failed")
    m.prime(m.SNAPSHOT_REQUESTS, *({"result": r} for r in results))
    m.prime(m.SNAPSHOT_WAITS, {"cause": "weight"}, {"cause": "retry_after"})
    m.prime(m.SNAPSHOT_WAIT_SECONDS, {"cause": "weight"}, {"cause": "retry_after"})
    kinds = ("reset", "update", "checkpoint")
    m.prime(m.BOOK_RECORDS_PUBLISHED, *({"kind": k} for k in kinds))
    m.prime(
        m.BOOK_RECORDS_LOST,
        *({"kind": k, "reason": r} for k in kinds for r in ("buffer_full", "shutdown")),
    )


class Books:
    """The order books of ingest: sync, publish, check; ``request_snapshot`` fetches over REST."""

    def __init__(
        self,
        symbols: Sequence[str],
        stats: IngestStats,
        publisher: Publisher,
        request_snapshot: Callable[[str], None],
        *,
        updates_topic: str,
        snapshots_topic: str,
        max_buffered: int,
        checkpoint_interval_s: float,
    ) -> None:
        self.stats = stats
        self.publisher = publisher
        self.request_snapshot = request_snapshot
        self.updates_topic = updates_topic
        self.snapshots_topic = snapshots_topic
        self.checkpoint_interval_s = checkpoint_interval_s
        self._max_buffered = max_buffered
        self.stopping = False
        base = epoch_base(_now_us())
        self._symbols = {
            s.upper(): _Symbol(BookSync(s.upper(), max_buffered=max_buffered), base) for s in symbols
        }
        self._log = RateLimitedLog(5.0)
        self._live = 0
        self._buffered = 0
        self._events = {
            o: m.BOOK_EVENTS.labels(outcome=o)
            for o in ("applied", "skipped_older_than_snapshot", "in_resync_gap")
        }
        self._ticker_checks = {
            r: m.BOOK_TICKER_CHECKS.labels(result=r) for r in ("match", "mismatch", "unchecked")
        }

    def prime_metrics(self) -> None:
        """Series for every label an event may give, so they read 0 rather than no data."""
        prime_book_metrics(self._symbols)
        self._gauges()

    def book(self, symbol: str) -> OrderBook | None:
        """``symbol``'s live book (read only), or None while it syncs."""
        state = self._symbols.get(symbol.upper())
        return state.sync.book if state is not None else None

    def sync(self, symbol: str) -> BookSync:
        """``symbol``'s sync machine (its counters account for every event)."""
        return self._symbols[symbol.upper()].sync

    # --- inputs ------------------------------------------------------------------------------
    def on_diff(self, diff: DepthDiff, receive_time_us: int) -> None:
        """One diff-depth event, in stream order."""
        state = self._symbols[diff.symbol]
        self.stats.book_events += 1
        outputs = state.sync.on_diff(diff)
        if state.sync.book is None:  # buffered: its receive time waits with it
            times = state.receive_times
            times[diff.final_update_id] = receive_time_us
            if len(times) > self._max_buffered:  # the buffer dropped its oldest: so do its times
                del times[next(iter(times))]
        self._handle(state, outputs, None, receive_time_us)

    def on_snapshot(self, snapshot: DepthSnapshot, receive_time_us: int) -> None:
        """A REST snapshot, asked for by the sync machine."""
        state = self._symbols[snapshot.symbol]
        outputs = state.sync.on_snapshot(snapshot)
        if any(isinstance(o, BookReset) for o in outputs):
            result = "used"
        elif any(isinstance(o, SnapshotNeeded) for o in outputs):
            result = "stale"
        else:
            result = "ignored"
        m.SNAPSHOT_REQUESTS.labels(result=result).inc()
        self._handle(state, outputs, snapshot, receive_time_us)
        if state.sync.book is not None:
            state.receive_times.clear()

    def on_ticker(self, ticker: BookTicker) -> None:
        """A bookTicker: checked now if the book stands at its id, later if the book is behind."""
        state = self._symbols[ticker.symbol]
        book = state.sync.book
        if book is not None and ticker.update_id == book.update_id:
            self._check(state, book, ticker)
        elif book is not None and ticker.update_id < book.update_id:
            self._ticker_checks["unchecked"].inc()
        else:
            tickers = state.tickers
            if len(tickers) >= MAX_PENDING_TICKERS:
                del tickers[next(iter(tickers))]
                self._ticker_checks["unchecked"].inc()
            tickers[ticker.update_id] = ticker

    # --- outputs -----------------------------------------------------------------------------
    def _handle(
        self, state: _Symbol, outputs: list[SyncOutput], snapshot: DepthSnapshot | None, receive_time_us: int
    ) -> None:
        for output in outputs:
            if isinstance(output, Applied):
                self._applied(state, output.diff, receive_time_us)
            elif isinstance(output, Dropped):
                self._dropped(output)
            elif isinstance(output, SnapshotNeeded):
                self.request_snapshot(output.symbol)
            elif isinstance(output, BookReset):
                assert snapshot is not None
                self._reset(state, snapshot, receive_time_us)
            elif isinstance(output, ResyncStarted):
                self._resync_started(state, output)
            elif isinstance(output, SnapshotIgnored | Buffered):
                pass
        self._account_buffer(state)
        live = state.sync.book is not None
        if live != state.live:
            state.live = live
            self._live += 1 if live else -1
            self._gauges()
        book = state.sync.book
        if book is not None and state.tickers:
            self._check_pending(state, book)

    def _account_buffer(self, state: _Symbol) -> None:
        """Carry the sync's buffer size and buffer gaps into the totals (they change in its calls)."""
        counters = state.sync.counters
        delta = counters.buffered - state.counted_buffered
        if delta:
            state.counted_buffered = counters.buffered
            self._buffered += delta
            self.stats.book_events_buffered = self._buffered
            m.BOOK_EVENTS_BUFFERED.set(self._buffered)
        if counters.buffer_gaps != state.counted_buffer_gaps:
            m.BOOK_GAPS.labels(where="buffer").inc(counters.buffer_gaps - state.counted_buffer_gaps)
            state.counted_buffer_gaps = counters.buffer_gaps

    def _applied(self, state: _Symbol, diff: DepthDiff, receive_time_us: int) -> None:
        self.stats.book_events_applied += 1
        self._events["applied"].inc()
        received = state.receive_times.pop(diff.final_update_id, receive_time_us)
        record = BookUpdateRecord(
            symbol=diff.symbol,
            epoch=state.epoch,
            first_update_id=diff.first_update_id,
            final_update_id=diff.final_update_id,
            bids=diff.bids,
            asks=diff.asks,
            event_time_us=diff.event_time_us,
            receive_time_us=received,
        )
        checkpoint = None
        book = state.sync.book
        now = time.monotonic()
        if (
            self.checkpoint_interval_s > 0
            and book is not None
            and book.update_id == diff.final_update_id
            and not book.is_crossed()
            and now - state.last_checkpoint >= self.checkpoint_interval_s
        ):
            state.last_checkpoint = now
            checkpoint = (whole(book), book.event_time_us)
        self._produce(state, "update", encode_book(record), state.epoch, checkpoint)

    def _dropped(self, output: Dropped) -> None:
        if output.reason == "resync_gap":
            self.stats.book_events_in_resync_gap += output.count
            self._events["in_resync_gap"].inc(output.count)
        else:
            self.stats.book_events_skipped += output.count
            self._events["skipped_older_than_snapshot"].inc(output.count)

    def _reset(self, state: _Symbol, snapshot: DepthSnapshot, receive_time_us: int) -> None:
        """A new epoch: the snapshot's whole book, before the buffered diffs applied on top of it."""
        state.epoch += 1
        self.stats.book_snapshots_used += 1
        levels = whole(OrderBook.from_snapshot(snapshot))
        record = BookResetRecord(
            symbol=snapshot.symbol,
            epoch=state.epoch,
            reason=state.reset_reason,
            update_id=snapshot.last_update_id,
            bids=levels.bids,
            asks=levels.asks,
            event_time_us=None,
            receive_time_us=receive_time_us,
        )
        state.last_checkpoint = time.monotonic()
        self._produce(state, "reset", encode_book(record), state.epoch, (levels, None))

    def _resync_started(self, state: _Symbol, output: ResyncStarted) -> None:
        state.reset_reason = output.reason
        state.tickers.clear()
        self.stats.book_resyncs += 1
        m.BOOK_RESYNCS.labels(symbol=m.symbol_label(output.symbol), reason=output.reason).inc()
        if output.reason == "gap":
            m.BOOK_GAPS.labels(where="live").inc()

    def _gauges(self) -> None:
        m.BOOKS.labels(state="live").set(self._live)
        m.BOOKS.labels(state="syncing").set(len(self._symbols) - self._live)

    # --- the bookTicker check ----------------------------------------------------------------
    def _check_pending(self, state: _Symbol, book: OrderBook) -> None:
        ticker = state.tickers.pop(book.update_id, None)
        if ticker is not None:
            self._check(state, book, ticker)
        behind = [u for u in state.tickers if u < book.update_id]
        for u in behind:
            del state.tickers[u]
        if behind:
            self._ticker_checks["unchecked"].inc(len(behind))

    def _check(self, state: _Symbol, book: OrderBook, ticker: BookTicker) -> None:
        """Compare the touch; a book that disagrees with the exchange at the same id is wrong: resync it."""
        self.stats.book_ticker_checks += 1
        bid = (ticker.bid_price, ticker.bid_quantity)
        ask = (ticker.ask_price, ticker.ask_quantity)
        if book.best_bid() == bid and book.best_ask() == ask:
            self._ticker_checks["match"].inc()
            return
        self.stats.book_ticker_mismatches += 1
        self._ticker_checks["mismatch"].inc()
        self._log.log(
            logger,
            logging.ERROR,
            "ticker_mismatch:" + ticker.symbol,
            "%s book at update id %d shows bid %s ask %s; its bookTicker says %s / %s: resyncing",
            ticker.symbol,
            book.update_id,
            book.best_bid(),
            book.best_ask(),
            bid,
            ask,
        )
        self._handle(state, state.sync.resync("requested"), None, _now_us())

    # --- Kafka -------------------------------------------------------------------------------
    def _produce(
        self,
        state: _Symbol,
        kind: BookRecordType,
        value: bytes,
        epoch: int,
        checkpoint: tuple[DepthSnapshot, int | None] | None,
    ) -> None:
        """Produce one ``book-updates`` record; a checkpoint of the book after it follows its delivery."""

        def delivered(error: KafkaError | None, message: Message) -> None:
            self.publisher.settled()
            if error is not None:
                self._lost(state, kind, loss_reason(error), epoch)
                return
            self._published(kind)
            if checkpoint is not None and not self.stopping:
                self._checkpoint(
                    state, epoch, checkpoint, message.partition() or 0, (message.offset() or 0) + 1
                )

        key = encode_key(state.sync.symbol)
        refused = self.publisher.produce(self.updates_topic, value, key, delivered)
        if refused is not None:
            self._lost(state, kind, refused, epoch)

    def _checkpoint(
        self, state: _Symbol, epoch: int, book: tuple[DepthSnapshot, int | None], partition: int, offset: int
    ) -> None:
        levels, event_time_us = book
        record = BookCheckpoint(
            symbol=levels.symbol,
            epoch=epoch,
            update_id=levels.last_update_id,
            bids=levels.bids,
            asks=levels.asks,
            event_time_us=event_time_us,
            updates_partition=partition,
            updates_offset=offset,
            checkpoint_time_us=_now_us(),
        )

        def delivered(error: KafkaError | None, message: Message) -> None:
            self.publisher.settled()
            if error is not None:
                self._lost(state, "checkpoint", loss_reason(error), epoch)
            else:
                self._published("checkpoint")

        key = encode_key(levels.symbol)
        refused = self.publisher.produce(self.snapshots_topic, encode_book(record), key, delivered)
        if refused is not None:
            self._lost(state, "checkpoint", refused, epoch)

    def _published(self, kind: BookRecordType) -> None:
        self.stats.book_records_published += 1
        m.BOOK_RECORDS_PUBLISHED.labels(kind=kind).inc()

    def _lost(self, state: _Symbol, kind: BookRecordType, reason: str, epoch: int) -> None:
        """Count a lost record; a lost reset or update breaks the book downstream, so resync it."""
        self.stats.book_records_lost += 1
        m.BOOK_RECORDS_LOST.labels(kind=kind, reason=reason).inc()
        self._log.log(
            logger,
            logging.ERROR,
            f"book_lost:{reason}",
            "%s record of %s lost: %s",
            kind,
            state.sync.symbol,
            reason,
        )
        if kind == "checkpoint" or reason == "shutdown" or self.stopping or epoch != state.epoch:
            return
        if state.sync.book is not None:
            self._handle(state, state.sync.resync("requested"), None, _now_us())


def start_books(
    settings: IngestSettings,
    session: aiohttp.ClientSession,
    symbols: Sequence[str],
    stats: IngestStats,
    publisher: Publisher,
    *,
    updates_topic: str,
    snapshots_topic: str,
) -> tuple[Books, SnapshotQueue]:
    """The books of ``symbols``, and the snapshot queue that serves them (the caller runs it)."""
    books: Books | None = None

    def deliver(snapshot: DepthSnapshot, receive_time_us: int) -> None:
        assert books is not None
        books.on_snapshot(snapshot, receive_time_us)

    queue = SnapshotQueue(
        session,
        settings.rest_url,
        deliver,
        limit=settings.depth_snapshot_limit,
        budget=WeightBudget(settings.rest_weight_per_minute),
        workers=settings.depth_snapshot_concurrency,
        timeout_s=settings.rest_timeout_s,
        retry_initial_s=settings.backoff_initial_s,
        retry_max_s=settings.backoff_max_s,
    )
    books = Books(
        symbols,
        stats,
        publisher,
        queue.request,
        updates_topic=updates_topic,
        snapshots_topic=snapshots_topic,
        max_buffered=settings.depth_buffer_max_events,
        checkpoint_interval_s=settings.book_checkpoint_interval_s,
    )
    return books, queue


def log_summary(stats: IngestStats) -> None:
    """One line with the books' final counts."""
    logger.info(
        "order books: %d diff events (%d applied, %d older than the snapshot, %d in resync gaps, "
        "%d still buffered), %d snapshots used, %d resyncs, %d book records published, %d lost, "
        "%d of %d bookTicker checks mismatched",
        stats.book_events,
        stats.book_events_applied,
        stats.book_events_skipped,
        stats.book_events_in_resync_gap,
        stats.book_events_buffered,
        stats.book_snapshots_used,
        stats.book_resyncs,
        stats.book_records_published,
        stats.book_records_lost,
        stats.book_ticker_mismatches,
        stats.book_ticker_checks,
    )
