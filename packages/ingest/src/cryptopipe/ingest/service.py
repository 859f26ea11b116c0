"""The ingest service: exchange WebSocket streams in, one Kafka record per trade out (and, with
``INGEST_DEPTH`` on, each symbol's order book kept in sync and published by :mod:`cryptopipe.ingest.books`).

Per symbol, trade ids are consecutive; :class:`Ingest` publishes them to the ``prices`` topic in
id order, exactly once each as far as it can tell:

- an id at or below the last one published is a duplicate (reconnect overlap) and is dropped;
- an id above last + 1 is a gap. In aggTrade mode the missing ids are fetched from REST and
  published (``backfilled=True``) *before* the live trade that revealed the gap; live trades of
  that symbol wait meanwhile, so the topic stays in id order. What cannot be recovered (trade
  mode, REST failure, ids REST does not have) is counted as unfilled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field, replace

import aiohttp

from cryptopipe.ingest.backfill import PAGE_LIMIT, RestClient
from cryptopipe.ingest.books import Books, log_summary, start_books
from cryptopipe.ingest.connection import StreamConnection
from cryptopipe.ingest.errors import BackfillError
from cryptopipe.ingest.frames import ControlReply, FrameParser, Rejected, ServerShutdown, time_unit
from cryptopipe.ingest.market import plan_streams, trading_symbols
from cryptopipe.ingest.pacing import AttemptWindow
from cryptopipe.ingest.publisher import IngestStats, Publisher
from cryptopipe.ingest.settings import IngestSettings
from cryptopipe.observability import metrics as m
from cryptopipe.runtime import Backoff, RateLimitedLog, ensure_topics
from cryptopipe.schemas import (
    ALERTS,
    BOOK_SNAPSHOTS,
    BOOK_UPDATES,
    DEAD_LETTERS,
    PRICES,
    BookTicker,
    DeadLetter,
    DepthDiff,
    KafkaSettings,
    TopicSpec,
    Trade,
)
from cryptopipe.schemas import binance as bn
from cryptopipe.skew import BinanceTimeReference, SkewEstimator

logger = logging.getLogger(__name__)

#: Longest ingest waits at start-up for a first clock-offset estimate before opening the streams.
FIRST_SKEW_ESTIMATE_WAIT_S = 3.0
#: How often per-trade histogram observations are handed to the metrics (they lag by up to this).
HISTOGRAM_FLUSH_S = 0.1


class _SymbolMetrics:
    """Metric children of one symbol, looked up once: ``labels()`` costs more than ``inc()``."""

    __slots__ = ("corrected", "network", "received")

    def __init__(self, symbol: str) -> None:
        self.received = m.TRADES_RECEIVED.labels(symbol=symbol)
        self.network = m.HistogramBatch(m.NETWORK_LATENCY.labels(symbol=symbol))
        self.corrected = m.HistogramBatch(m.NETWORK_LATENCY_CORRECTED.labels(symbol=symbol))

    def flush(self) -> None:
        self.network.flush()
        self.corrected.flush()


@dataclass
class _SymbolState:
    metrics: _SymbolMetrics
    last_id: int | None = None
    backfill: asyncio.Task[None] | None = None
    next_id: int = 0
    gap_end: int = 0
    waiting: list[tuple[Trade, float]] = field(default_factory=list)


class Ingest:
    """Streams trades of ``settings.symbols`` from the exchange into Kafka until ``stop`` is set."""

    def __init__(self, settings: IngestSettings, kafka: KafkaSettings) -> None:
        self.settings = settings
        self.kafka = kafka
        self.stats = IngestStats()
        self.prices_topic = PRICES.with_prefix(kafka.topic_prefix).name
        self.dead_letter_topic = DEAD_LETTERS.with_prefix(kafka.topic_prefix).name
        self.updates_topic = BOOK_UPDATES.with_prefix(kafka.topic_prefix).name
        self.snapshots_topic = BOOK_SNAPSHOTS.with_prefix(kafka.topic_prefix).name
        self.symbols: tuple[str, ...] = ()
        self.shards: list[tuple[str, ...]] = []
        self.parser = FrameParser({}, max_frame_bytes=settings.max_frame_bytes)
        if not settings.all_symbols:
            self._plan(settings.symbols)
        self._symbols: dict[str, _SymbolState] = {}
        self._publisher: Publisher | None = None
        self.books: Books | None = None
        self._rest: RestClient | None = None
        self._skew: SkewEstimator | None = None
        self._stopping = False
        self._log = RateLimitedLog(5.0)
        # Per-trade histograms are observed in batches (one lock per bucket, not two per trade).
        self._processing = m.HistogramBatch(m.INGEST_PROCESSING)

    def _plan(self, symbols: tuple[str, ...]) -> None:
        """Streams and connections for ``symbols`` (given, or every TRADING symbol)."""
        plan = plan_streams(symbols, self.settings)
        self.symbols = tuple(s.upper() for s in symbols)
        self.shards = plan.shards
        self.parser = FrameParser(plan.symbols, max_frame_bytes=self.settings.max_frame_bytes)

    def topic_specs(self) -> list[TopicSpec]:
        """The topics ingest creates when missing: prices, alerts (for the alerting job), dead letters;
        with books on, book-updates and the compacted book-snapshots (same partition count)."""
        prefix = self.kafka.topic_prefix
        sized = [PRICES, ALERTS, BOOK_UPDATES] if self.settings.books else [PRICES, ALERTS]
        specs = [
            replace(
                spec.with_prefix(prefix),
                partitions=self.settings.topic_partitions,
                retention_ms=self.settings.topic_retention_ms,
            )
            for spec in sized
        ]
        if self.settings.books:
            specs.append(
                replace(BOOK_SNAPSHOTS.with_prefix(prefix), partitions=self.settings.topic_partitions)
            )
        return [*specs, DEAD_LETTERS.with_prefix(prefix)]

    def _prime_metrics(self) -> None:
        """Series for events that may never happen in a run, so they read 0 rather than no data."""
        per_symbol = [{"symbol": s} for s in self.symbols]
        for metric in (m.TRADES_RECEIVED, m.TRADES_PUBLISHED, m.GAPS, m.BACKFILLED, m.UNFILLED, m.DUPLICATES):
            m.prime(metric, *per_symbol)
        m.prime(m.TRADES_LOST, *({"reason": r} for r in ("buffer_full", "shutdown")))
        m.prime(
            m.RECONNECTS,
            *(
                {"reason": r}
                for r in ("connect_failed", "stale", "closed", "error", "server_shutdown", "max_age")
            ),
        )
        m.prime(m.DEAD_LETTERS, {"component": "ingest", "reason": "malformed_json"})
        m.prime(m.ERRORS, *({"component": "ingest", "reason": r} for r in ("backfill", "create_topics")))
        if self.books is not None:
            self.books.prime_metrics()

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set; then flush the producer (bounded) and return."""
        self._stopping = False
        self._publisher = Publisher(
            self.kafka,
            self.settings,
            self.stats,
            prices_topic=self.prices_topic,
            dead_letter_topic=self.dead_letter_topic,
        )
        try:
            if await self._ensure_topics(stop):
                await self._stream(stop)
        finally:
            self._stopping = True
            if self.books is not None:
                self.books.stopping = True
            await self._finish_backfills()
            lost = await asyncio.to_thread(self._publisher.flush, self.settings.flush_timeout_s)
            self._flush_histograms()
            self._publisher.close()
            logger.info(
                "ingest stopped: %d received, %d published, %d lost (%d at shutdown), %d dead letters, "
                "%d backfilled, %d unfilled, %d reconnects",
                self.stats.received,
                self.stats.published,
                self.stats.lost,
                lost,
                self.stats.dead_lettered,
                self.stats.backfilled,
                self.stats.unfilled,
                self.stats.reconnects,
            )
            if self.books is not None:
                log_summary(self.stats)

    async def _ensure_topics(self, stop: asyncio.Event) -> bool:
        backoff = Backoff(self.settings.backoff_initial_s, self.settings.backoff_max_s)
        specs = self.topic_specs()
        warned = False
        while not stop.is_set():
            try:
                await asyncio.to_thread(
                    ensure_topics,
                    self.kafka,
                    specs,
                    replication_factor=self.settings.topic_replication_factor,
                )
                return True
            except Exception as exc:
                m.ERRORS.labels(component="ingest", reason="create_topics").inc()
                if not warned:
                    logger.warning(
                        "cannot create topics on Kafka at %s (%s); retrying with backoff",
                        self.kafka.bootstrap_servers,
                        exc,
                    )
                    warned = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), backoff.next_delay())
        return False

    async def _stream(self, stop: asyncio.Event) -> None:
        assert self._publisher is not None
        timeout = aiohttp.ClientTimeout(total=None, connect=self.settings.connect_timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            self._rest = RestClient(
                session,
                self.settings.rest_url,
                retries=self.settings.rest_retries,
                timeout_s=self.settings.rest_timeout_s,
            )
            if self.settings.all_symbols:
                symbols = await trading_symbols(session, self.settings.rest_url, self.settings, stop)
                if symbols is None:
                    return
                self._plan(symbols)
            tasks = self._start_books(session)
            self._prime_metrics()
            attempts = AttemptWindow(self.settings.connect_attempts_per_5min, 300.0)
            connections = [
                StreamConnection(
                    index,
                    shard,
                    self.settings,
                    session,
                    self._on_frame,
                    attempts,
                    on_reconnect=self._on_reconnect,
                )
                for index, shard in enumerate(self.shards)
            ]
            logger.info(
                "ingesting %d streams (%s, depth %s) of %d symbols over %d connection(s) from %s into %s",
                sum(len(s) for s in self.shards),
                self.settings.mode,
                self.settings.depth,
                len(self.symbols),
                len(connections),
                self.settings.stream_base_url,
                self.prices_topic,
            )
            await self._first_skew_estimate(session)
            tasks += [asyncio.create_task(c.run(), name=f"ingest-connection-{c.index}") for c in connections]
            tasks.append(asyncio.create_task(self._publisher.poll_forever(), name="ingest-poll"))
            tasks.append(asyncio.create_task(self._flush_histograms_forever(), name="ingest-histograms"))
            if self._skew is not None:
                tasks.append(asyncio.create_task(self._skew.run(stop), name="ingest-clock-skew"))
            await self._until_stopped(stop, tasks)

    def _start_books(self, session: aiohttp.ClientSession) -> list[asyncio.Task[None]]:
        """With books on: the books, and the task of the snapshot queue that serves them."""
        if not self.settings.books:
            return []
        assert self._publisher is not None
        self.books, queue = start_books(
            self.settings,
            session,
            self.symbols,
            self.stats,
            self._publisher,
            updates_topic=self.updates_topic,
            snapshots_topic=self.snapshots_topic,
        )
        return [asyncio.create_task(queue.run(), name="ingest-snapshots")]

    async def _first_skew_estimate(self, session: aiohttp.ClientSession) -> None:
        """The exchange clock's offset, estimated against the same REST API, corrects the network
        latency (published next to the raw figure). A first estimate before the streams open, so
        the first trades are corrected too, but never wait long for it."""
        if self.settings.clock_skew:
            self._skew = SkewEstimator(BinanceTimeReference(self.settings.rest_url, session=session))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._skew.update(), FIRST_SKEW_ESTIMATE_WAIT_S)

    async def _until_stopped(self, stop: asyncio.Event, tasks: list[asyncio.Task[None]]) -> None:
        stopper = asyncio.create_task(stop.wait())
        try:
            done, _ = await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stopper:
                    task.result()  # a connection loop only ends by raising: surface it
        finally:
            for task in [stopper, *tasks]:
                task.cancel()
            await asyncio.gather(stopper, *tasks, return_exceptions=True)
            self._stopping = True
            await self._finish_backfills()

    def _flush_histograms(self) -> None:
        self._processing.flush()
        for state in self._symbols.values():
            state.metrics.flush()

    async def _flush_histograms_forever(self, interval_s: float = HISTOGRAM_FLUSH_S) -> None:
        while True:
            await asyncio.sleep(interval_s)
            self._flush_histograms()

    # --- frames -------------------------------------------------------------------------
    def _on_frame(self, payload: bytes | str, receive_time_us: int, binary: bool = False) -> bool:
        """Handle one data frame; returns True when the server announced its shutdown."""
        started = time.perf_counter()
        try:
            outcome = self.parser.parse(payload, receive_time_us, binary=binary)
            if isinstance(outcome, Trade):
                self._on_live_trade(outcome, started)
            elif isinstance(outcome, DepthDiff):
                assert self.books is not None
                self.books.on_diff(outcome, receive_time_us)
            elif isinstance(outcome, BookTicker):
                assert self.books is not None
                self.books.on_ticker(outcome)
            elif isinstance(outcome, Rejected):
                self._reject(outcome, receive_time_us)
            elif isinstance(outcome, ServerShutdown):
                return True
            elif isinstance(outcome, ControlReply) and outcome.error is not None:
                m.ERRORS.labels(component="ingest", reason="control_error").inc()
                self._log.log(
                    logger, logging.ERROR, "control", "exchange refused a request: %s", outcome.error
                )
        except Exception as exc:
            # A bug in handling one frame must not stop the stream: count it, keep it, go on. One
            # rate-limited line, no traceback: a peer able to trigger the bug must not flood the log.
            self._log.log(
                logger, logging.ERROR, "internal_error", "internal error handling a frame: %.300r", exc
            )
            sample = payload if isinstance(payload, bytes) else payload.encode("utf-8", "replace")
            self._reject(Rejected("internal_error", repr(exc)[:500], sample[:1024]), receive_time_us)
        return False

    def _reject(self, rejected: Rejected, receive_time_us: int) -> None:
        assert self._publisher is not None
        self.stats.dead_lettered += 1
        m.DEAD_LETTERS.labels(component="ingest", reason=rejected.reason).inc()
        sample = rejected.sample.decode("utf-8", "replace")
        self._log.log(
            logger,
            logging.WARNING,
            "reject:" + rejected.reason,
            "dead letter (%s: %s); sample: %.200r",
            rejected.reason,
            rejected.detail[:300],
            sample,
        )
        self._publisher.dead_letter(
            DeadLetter(
                source="ingest",
                reason=rejected.reason,
                detail=rejected.detail[:1000],
                payload=sample,
                receive_time_us=receive_time_us,
            )
        )

    def _on_reconnect(self, reason: str) -> None:
        self.stats.reconnects += 1

    # --- ordering, duplicates, gaps ------------------------------------------------------
    def _state(self, symbol: str) -> _SymbolState:
        state = self._symbols.get(symbol)
        if state is None:
            state = self._symbols[symbol] = _SymbolState(_SymbolMetrics(symbol))
        return state

    def _on_live_trade(self, trade: Trade, started: float) -> None:
        self.stats.received += 1
        metrics = self._state(trade.symbol).metrics
        metrics.received.inc()
        metrics.network.add((trade.receive_time_us - trade.trade_time_us) / 1e6)
        if self._skew is not None:
            corrected = self._skew.corrected_latency_us(trade.receive_time_us, trade.trade_time_us)
            if corrected is not None:
                metrics.corrected.add(corrected / 1e6)
        self._sequence(trade, started)

    def _sequence(self, trade: Trade, started: float | None) -> None:
        state = self._state(trade.symbol)
        if state.backfill is not None:
            newest = state.waiting[-1][0].trade_id if state.waiting else state.last_id
            if newest is not None and trade.trade_id <= newest:
                self._duplicate(trade)
            else:
                state.waiting.append((trade, started or time.perf_counter()))
            return
        last = state.last_id
        if last is not None:
            if trade.trade_id <= last:
                self._duplicate(trade)
                return
            if trade.trade_id > last + 1:
                self.stats.gaps += 1
                m.GAPS.labels(symbol=trade.symbol).inc()
                first, end = last + 1, trade.trade_id - 1
                logger.info("gap in %s: ids %d..%d missing (%d)", trade.symbol, first, end, end - first + 1)
                if self.settings.mode == "aggTrade" and not self._stopping and self._rest is not None:
                    state.waiting.append((trade, started or time.perf_counter()))
                    state.next_id, state.gap_end = first, end
                    state.backfill = asyncio.create_task(
                        self._backfill(trade.symbol, first, end), name=f"ingest-backfill-{trade.symbol}"
                    )
                    return
                self._unfilled(trade.symbol, end - first + 1)
        self._publish(trade, started)
        state.last_id = trade.trade_id

    def _publish(self, trade: Trade, started: float | None) -> None:
        assert self._publisher is not None
        self._publisher.publish(trade)
        if started is not None and not trade.backfilled:
            self._processing.add(time.perf_counter() - started)

    def _duplicate(self, trade: Trade) -> None:
        self.stats.duplicates += 1
        m.DUPLICATES.labels(symbol=trade.symbol).inc()

    def _unfilled(self, symbol: str, count: int) -> None:
        if count <= 0:
            return
        self.stats.unfilled += count
        m.UNFILLED.labels(symbol=symbol).inc(count)
        self._log.log(
            logger,
            logging.WARNING,
            "unfilled:" + symbol,
            "%s: %d trade ids could not be backfilled",
            symbol,
            count,
        )

    async def _backfill(self, symbol: str, first: int, end: int) -> None:
        """Publish ids first..end from REST (the newest ``INGEST_BACKFILL_MAX_IDS`` of them)."""
        state = self._symbols[symbol]
        state.next_id = max(first, end - self.settings.backfill_max_ids + 1)
        self._unfilled(symbol, state.next_id - first)
        try:
            assert self._rest is not None
            while state.next_id <= end:
                page = await self._rest.agg_trades(
                    symbol, state.next_id, min(PAGE_LIMIT, end - state.next_id + 1)
                )
                progressed = False
                now_us = time.time_ns() // 1000
                for item in page:
                    if item.a < state.next_id:
                        continue
                    if item.a > end:
                        break
                    self._unfilled(symbol, item.a - state.next_id)
                    trade = bn.rest_agg_to_trade(
                        item, symbol=symbol, receive_time_us=now_us, unit=time_unit(item.T)
                    )
                    self._publish(trade, None)
                    self.stats.backfilled += 1
                    m.BACKFILLED.labels(symbol=symbol).inc()
                    state.next_id = item.a + 1
                    progressed = True
                if not progressed:
                    break
        except BackfillError as exc:
            m.ERRORS.labels(component="ingest", reason="backfill").inc()
            logger.error("%s", exc)
        finally:
            self._end_backfill(symbol)

    def _end_backfill(self, symbol: str) -> None:
        """Count what was not recovered, then release the live trades that waited, in order."""
        state = self._symbols[symbol]
        self._unfilled(symbol, state.gap_end - state.next_id + 1)
        state.last_id = state.gap_end
        state.backfill = None
        waiting, state.waiting = state.waiting, []
        for trade, started in waiting:
            self._sequence(trade, started)

    async def _finish_backfills(self) -> None:
        """On shutdown: stop backfilling (the rest is unfilled) and publish the trades that waited."""
        tasks = [s.backfill for s in self._symbols.values() if s.backfill is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for symbol, state in self._symbols.items():
            if state.backfill is not None:  # cancelled before it ever ran
                self._end_backfill(symbol)
