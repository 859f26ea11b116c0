"""The ingest service: exchange WebSocket streams in, one Kafka record per trade out, and with
``INGEST_DEPTH`` on each symbol's order book kept in sync and published.

Frames are parsed once (:mod:`cryptopipe.ingest.frames`); trades go to
:class:`~cryptopipe.ingest.trades.TradeSequencer` (id order, duplicates, gaps and backfill), depth
diffs and book tickers to :class:`~cryptopipe.ingest.books.Books`, and what is not valid to the
dead-letter topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import replace

import aiohttp

from cryptopipe.ingest.backfill import RestClient
from cryptopipe.ingest.books import Books, log_summary, prime_book_metrics, start_books
from cryptopipe.ingest.connection import StreamConnection
from cryptopipe.ingest.errors import ResumeError
from cryptopipe.ingest.frames import ControlReply, FrameParser, Rejected, ServerShutdown
from cryptopipe.ingest.market import market_share, plan_streams, trading_symbols
from cryptopipe.ingest.pacing import AttemptWindow
from cryptopipe.ingest.publisher import IngestStats, Publisher
from cryptopipe.ingest.resume import read_resume_point
from cryptopipe.ingest.settings import IngestSettings
from cryptopipe.ingest.trades import TradeSequencer
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
from cryptopipe.skew import BinanceTimeReference, SkewEstimator

logger = logging.getLogger(__name__)

#: Longest ingest waits at start-up for a first clock-offset estimate before opening the streams.
FIRST_SKEW_ESTIMATE_WAIT_S = 3.0
#: How often per-trade histogram observations are handed to the metrics (they lag by up to this).
HISTOGRAM_FLUSH_S = 0.1


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
        self.trades = TradeSequencer(settings, self.stats)
        self._publisher: Publisher | None = None
        self.books: Books | None = None
        self._log = RateLimitedLog(5.0)

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
        per_symbol = [{"symbol": label} for label in m.symbol_labels(self.symbols)]
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
        m.prime(
            m.ERRORS,
            *(
                {"component": "ingest", "reason": r}
                for r in ("backfill", "create_topics", "resume_failed", "resumed_ahead")
            ),
        )
        m.prime(m.RESUMED_SYMBOLS, {"outcome": "resumed"}, {"outcome": "not_resumed"})
        if self.books is not None:
            self.books.prime_metrics()
        else:
            # 0 books, 0 events: a trades-only run (symbols known: `all` resolves later).
            prime_book_metrics(s for s in self.settings.symbols if s != "all")

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set; then flush the producer (bounded) and return."""
        self.trades.stopping = False
        self._publisher = Publisher(
            self.kafka,
            self.settings,
            self.stats,
            prices_topic=self.prices_topic,
            dead_letter_topic=self.dead_letter_topic,
        )
        self.trades.publisher = self._publisher
        try:
            if await self._ensure_topics(stop):
                await self._stream(stop)
        finally:
            self.trades.stopping = True
            if self.books is not None:
                self.books.stopping = True
            await self.trades.finish_backfills()
            lost = await asyncio.to_thread(self._publisher.flush, self.settings.flush_timeout_s)
            self.trades.flush_histograms()
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
            self.trades.rest = RestClient(
                session,
                self.settings.rest_url,
                retries=self.settings.rest_retries,
                timeout_s=self.settings.rest_timeout_s,
            )
            if self.settings.all_symbols:
                symbols = await trading_symbols(session, self.settings.rest_url, self.settings, stop)
                if symbols is None:
                    return
                self._plan(
                    market_share(symbols, self.settings.all_shard_index, self.settings.all_shard_count)
                )
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
            await asyncio.gather(self._resume(), self._first_skew_estimate(session))
            tasks += [asyncio.create_task(c.run(), name=f"ingest-connection-{c.index}") for c in connections]
            tasks.append(asyncio.create_task(self._catch_up(connections, stop), name="ingest-catch-up"))
            tasks.append(asyncio.create_task(self._publisher.poll_forever(), name="ingest-poll"))
            tasks.append(asyncio.create_task(self._flush_histograms_forever(), name="ingest-histograms"))
            if self.trades.skew is not None:
                tasks.append(asyncio.create_task(self.trades.skew.run(stop), name="ingest-clock-skew"))
            await self._until_stopped(stop, tasks)

    async def _resume(self) -> None:
        """Before the streams open: each symbol's last trade id in prices becomes its sequencer's
        last id, so a gap left while no ingest ran is backfilled (:mod:`cryptopipe.ingest.resume`).
        A topic that cannot be read is logged and counted, and ingest starts without it."""
        not_resumed = m.RESUMED_SYMBOLS.labels(outcome="not_resumed")
        if not self.settings.resume_from_kafka:
            not_resumed.set(len(self.symbols))
            logger.info(
                "not resuming from %s (INGEST_RESUME_FROM_KAFKA=false): each symbol starts from its "
                "first live trade",
                self.prices_topic,
            )
            return
        try:
            point = await asyncio.to_thread(
                read_resume_point,
                self.kafka,
                self.prices_topic,
                self.symbols,
                kind=self.settings.mode,
                window=self.settings.resume_window,
            )
        except ResumeError as exc:
            not_resumed.set(len(self.symbols))
            m.ERRORS.labels(component="ingest", reason="resume_failed").inc()
            logger.error(
                "%s; starting without it: trades played while no ingest ran will not be backfilled "
                "(the principal needs READ on the topic; INGEST_RESUME_FROM_KAFKA=false skips the read)",
                exc,
            )
            return
        self.trades.resume(point.last_ids)
        self.stats.resumed = len(point.last_ids)
        m.RESUMED_SYMBOLS.labels(outcome="resumed").set(len(point.last_ids))
        not_resumed.set(len(point.not_resumed))
        m.RESUME_SECONDS.set(point.seconds)
        logger.info("%s", point.describe(self.prices_topic))

    async def _catch_up(self, connections: list[StreamConnection], stop: asyncio.Event) -> None:
        """Once every stream is subscribed, the resumed symbols that had no live trade yet are
        backfilled up to the exchange's latest trade (:meth:`TradeSequencer.catch_up`); then,
        like every task of the run, it waits for the stop."""
        await asyncio.gather(*(c.subscribed.wait() for c in connections))
        await self.trades.catch_up()
        await stop.wait()

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
            skew = self.trades.skew = SkewEstimator(
                BinanceTimeReference(self.settings.rest_url, session=session)
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(skew.update(), FIRST_SKEW_ESTIMATE_WAIT_S)

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
            self.trades.stopping = True
            await self.trades.finish_backfills()

    async def _flush_histograms_forever(self, interval_s: float = HISTOGRAM_FLUSH_S) -> None:
        while True:
            await asyncio.sleep(interval_s)
            self.trades.flush_histograms()

    # --- frames -------------------------------------------------------------------------
    def _on_frame(self, payload: bytes | str, receive_time_us: int, binary: bool = False) -> bool:
        """Handle one data frame; returns True when the server announced its shutdown."""
        started = time.perf_counter()
        try:
            outcome = self.parser.parse(payload, receive_time_us, binary=binary)
            if isinstance(outcome, Trade):
                self.trades.on_live_trade(outcome, started)
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
