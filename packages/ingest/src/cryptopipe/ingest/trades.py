"""A symbol's live trades into ``prices`` in id order, exactly once each as far as ingest can tell.

- an id at or below the last one published is a duplicate (reconnect overlap) and is dropped;
- an id above last + 1 is a gap. In aggTrade mode the missing ids are fetched from REST and
  published (``backfilled=True``) *before* the live trade that revealed the gap; live trades of
  that symbol wait meanwhile, so the topic stays in id order. What cannot be recovered (trade
  mode, REST failure, ids REST does not have) is counted as unfilled.

A new process starts from each symbol's last id in the topic (:mod:`cryptopipe.ingest.resume`),
so the trades played while no ingest ran are a gap like any other.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from cryptopipe.ingest.backfill import PAGE_LIMIT, RestClient
from cryptopipe.ingest.errors import BackfillError
from cryptopipe.ingest.frames import time_unit
from cryptopipe.ingest.publisher import IngestStats, Publisher
from cryptopipe.ingest.settings import IngestSettings
from cryptopipe.observability import metrics as m
from cryptopipe.runtime import RateLimitedLog
from cryptopipe.schemas import Trade
from cryptopipe.schemas import binance as bn
from cryptopipe.skew import SkewEstimator

logger = logging.getLogger(__name__)


class _SymbolMetrics:
    """Metric children of one symbol (under its label: ``other`` beyond METRICS_SYMBOL_LIMIT),
    looked up once: ``labels()`` costs more than ``inc()``."""

    __slots__ = ("corrected", "network", "received")

    def __init__(self, symbol: str) -> None:
        label = m.symbol_label(symbol)
        self.received = m.TRADES_RECEIVED.labels(symbol=label)
        self.network = m.HistogramBatch(m.NETWORK_LATENCY.labels(symbol=label))
        self.corrected = m.HistogramBatch(m.NETWORK_LATENCY_CORRECTED.labels(symbol=label))

    def flush(self) -> None:
        self.network.flush()
        self.corrected.flush()


@dataclass
class _SymbolState:
    metrics: _SymbolMetrics
    last_id: int | None = None
    resumed_from: int | None = None
    backfill: asyncio.Task[None] | None = None
    next_id: int = 0
    gap_end: int = 0
    waiting: list[tuple[Trade, float]] = field(default_factory=list)


class TradeSequencer:
    """Orders, deduplicates and backfills each symbol's live trades, then hands them to ``publisher``.

    The service sets ``publisher``, ``rest`` and ``skew`` once it has them, and ``stopping`` when it
    stops (no new backfill starts then).
    """

    def __init__(self, settings: IngestSettings, stats: IngestStats) -> None:
        self.settings = settings
        self.stats = stats
        self.publisher: Publisher | None = None
        self.rest: RestClient | None = None
        self.skew: SkewEstimator | None = None
        self.stopping = False
        self._symbols: dict[str, _SymbolState] = {}
        self._log = RateLimitedLog(5.0)
        # Per-trade histograms are observed in batches (one lock per bucket, not two per trade).
        self._processing = m.HistogramBatch(m.INGEST_PROCESSING)

    def flush_histograms(self) -> None:
        self._processing.flush()
        for state in self._symbols.values():
            state.metrics.flush()

    def _state(self, symbol: str) -> _SymbolState:
        state = self._symbols.get(symbol)
        if state is None:
            state = self._symbols[symbol] = _SymbolState(_SymbolMetrics(symbol))
        return state

    def on_live_trade(self, trade: Trade, started: float) -> None:
        self.stats.received += 1
        metrics = self._state(trade.symbol).metrics
        metrics.received.inc()
        metrics.network.add((trade.receive_time_us - trade.trade_time_us) / 1e6)
        if self.skew is not None:
            corrected = self.skew.corrected_latency_us(trade.receive_time_us, trade.trade_time_us)
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
                if last != state.resumed_from:
                    self._duplicate(trade)
                    return
                self._resumed_ahead(state, trade)
            elif trade.trade_id > last + 1 and self._gap(trade.symbol, state, last + 1, trade.trade_id - 1):
                state.waiting.append((trade, started or time.perf_counter()))
                return
        self._publish(trade, started)
        state.last_id = trade.trade_id

    def _gap(self, symbol: str, state: _SymbolState, first: int, end: int) -> bool:
        """Ids first..end are missing: count the gap and start backfilling it (True), or count
        them unfilled when that is not possible (False)."""
        self.stats.gaps += 1
        m.GAPS.labels(symbol=m.symbol_label(symbol)).inc()
        logger.info("gap in %s: ids %d..%d missing (%d)", symbol, first, end, end - first + 1)
        if self.settings.mode == "aggTrade" and not self.stopping and self.rest is not None:
            state.next_id, state.gap_end = first, end
            state.backfill = asyncio.create_task(
                self._backfill(symbol, first, end), name=f"ingest-backfill-{symbol}"
            )
            return True
        self._unfilled(symbol, end - first + 1)
        return False

    async def catch_up(self) -> None:
        """Once the streams are subscribed: each resumed symbol with no live trade yet asks REST
        for its latest trade, and what was played since the id it resumed from is backfilled now,
        not at its next live trade (a quiet symbol, a tape that ended while no ingest ran)."""
        if self.settings.mode != "aggTrade" or self.rest is None:
            return
        for symbol, state in list(self._symbols.items()):
            if not self._untouched(state):
                continue
            try:
                page = await self.rest.agg_trades(symbol, None, limit=1)
            except BackfillError as exc:
                m.ERRORS.labels(component="ingest", reason="backfill").inc()
                logger.error("%s", exc)
                continue
            if page and self._untouched(state) and not self.stopping:
                assert state.last_id is not None
                if page[-1].a > state.last_id:
                    self._gap(symbol, state, state.last_id + 1, page[-1].a)

    @staticmethod
    def _untouched(state: _SymbolState) -> bool:
        """Resumed, and no live trade taken since."""
        resumed = state.resumed_from is not None
        return resumed and state.last_id == state.resumed_from and state.backfill is None

    def resume(self, last_ids: Mapping[str, int]) -> None:
        """Take each symbol's last published id (read back from the topic at start) as its last
        id: its first live trade then reveals the trades played since, and the backfill fetches
        them. Call it before the streams open."""
        for symbol, last_id in last_ids.items():
            state = self._state(symbol)
            if state.last_id is None or last_id > state.last_id:
                state.last_id = state.resumed_from = last_id

    def _resumed_ahead(self, state: _SymbolState, trade: Trade) -> None:
        """A symbol's first live trade is at or below the id it resumed from: the topic holds
        ids of another exchange or tape, not this one's past. Forget them and start here."""
        resumed_from, state.resumed_from = state.resumed_from, None
        m.ERRORS.labels(component="ingest", reason="resumed_ahead").inc()
        logger.warning(
            "%s: first live trade %d is at or below id %d, the last in the topic (trades of another "
            "exchange or tape?): not resuming %s, it starts from this trade",
            trade.symbol,
            trade.trade_id,
            resumed_from,
            trade.symbol,
        )

    def _publish(self, trade: Trade, started: float | None) -> None:
        assert self.publisher is not None
        self.publisher.publish(trade)
        if started is not None and not trade.backfilled:
            self._processing.add(time.perf_counter() - started)

    def _duplicate(self, trade: Trade) -> None:
        self.stats.duplicates += 1
        m.DUPLICATES.labels(symbol=m.symbol_label(trade.symbol)).inc()

    def _unfilled(self, symbol: str, count: int) -> None:
        if count <= 0:
            return
        self.stats.unfilled += count
        m.UNFILLED.labels(symbol=m.symbol_label(symbol)).inc(count)
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
            assert self.rest is not None
            while state.next_id <= end:
                page = await self.rest.agg_trades(
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
                    m.BACKFILLED.labels(symbol=m.symbol_label(symbol)).inc()
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

    async def finish_backfills(self) -> None:
        """On shutdown: stop backfilling (the rest is unfilled) and publish the trades that waited."""
        tasks = [s.backfill for s in self._symbols.values() if s.backfill is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for symbol, state in self._symbols.items():
            if state.backfill is not None:  # cancelled before it ever ran
                self._end_backfill(symbol)
