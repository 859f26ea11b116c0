"""Which streams ingest opens: each symbol's trade, depth and bookTicker streams, over connections.

``INGEST_SYMBOLS=all`` reads every ``TRADING`` spot symbol from ``GET /api/v3/exchangeInfo``
(:func:`trading_symbols`). :func:`plan_streams` keeps a symbol's streams on one connection and puts
at most ``INGEST_STREAMS_PER_CONNECTION`` streams (Binance: 1,024) on each; the connections
subscribe what does not fit in their URL at ``INGEST_CONTROL_MESSAGES_PER_SECOND``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp
import msgspec

from cryptopipe.ingest.settings import IngestSettings
from cryptopipe.observability import metrics as m
from cryptopipe.runtime import Backoff
from cryptopipe.schemas import binance as bn
from cryptopipe.schemas.book import book_ticker_stream, depth_stream

logger = logging.getLogger(__name__)


class _SymbolInfo(msgspec.Struct, frozen=True):
    symbol: str
    status: str
    isSpotTradingAllowed: bool = True


class _ExchangeInfo(msgspec.Struct, frozen=True):
    symbols: list[_SymbolInfo]


_EXCHANGE_INFO = msgspec.json.Decoder(_ExchangeInfo)


def parse_trading_symbols(body: bytes) -> tuple[str, ...]:
    """The ``TRADING`` spot symbols of an ``exchangeInfo`` body, in its order (raises on a bad body)."""
    info = _EXCHANGE_INFO.decode(body)
    return tuple(s.symbol for s in info.symbols if s.status == "TRADING" and s.isSpotTradingAllowed)


async def trading_symbols(
    session: aiohttp.ClientSession, rest_url: str, settings: IngestSettings, stop: asyncio.Event
) -> tuple[str, ...] | None:
    """Every ``TRADING`` spot symbol, asked until the exchange answers; None if ``stop`` came first."""
    backoff = Backoff(settings.backoff_initial_s, settings.backoff_max_s)
    timeout = aiohttp.ClientTimeout(total=settings.rest_timeout_s)
    url = rest_url.rstrip("/") + "/api/v3/exchangeInfo"
    while not stop.is_set():
        try:
            async with session.get(url, timeout=timeout) as resp:
                body = await resp.read()
                if resp.status == 200:
                    symbols = parse_trading_symbols(body)
                    if symbols:
                        logger.info("INGEST_SYMBOLS=all: %d TRADING symbols from exchangeInfo", len(symbols))
                        return symbols
                problem = f"HTTP {resp.status}, {body[:200]!r}"
        except (aiohttp.ClientError, TimeoutError, msgspec.MsgspecError) as exc:
            problem = f"{type(exc).__name__}: {exc}"
        m.ERRORS.labels(component="ingest", reason="exchange_info").inc()
        logger.warning("cannot list the exchange's symbols at %s (%s); retrying", url, problem)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), backoff.next_delay())
    return None


def market_share(symbols: Sequence[str], index: int, count: int) -> tuple[str, ...]:
    """Shard ``index`` of ``count`` of the whole market: every ``count``-th symbol of the sorted list.

    Every ingest process sorts the same exchangeInfo the same way, so the shards never overlap and
    together hold every symbol.
    """
    return tuple(sorted(symbols)[index::count])


def symbol_streams(symbol: str, settings: IngestSettings) -> list[str]:
    """The streams of one symbol: its trades, and with books on its diff depth and bookTicker."""
    streams = [bn.stream_name(symbol, settings.mode)]
    if settings.books:
        streams.append(depth_stream(symbol, settings.depth_interval_ms))
        if settings.book_ticker:
            streams.append(book_ticker_stream(symbol))
    return streams


@dataclass(frozen=True, slots=True)
class StreamPlan:
    """The connections' streams (``shards``) and each stream's upper-case symbol."""

    shards: list[tuple[str, ...]]
    symbols: dict[str, str]


def plan_streams(symbols: Sequence[str], settings: IngestSettings) -> StreamPlan:
    """Every symbol's streams, a symbol's all on one connection, at most the per-connection limit each."""
    per_symbol = len(symbol_streams("x", settings))
    per_connection = settings.streams_per_connection
    if per_connection < per_symbol:
        raise ValueError(
            f"INGEST_STREAMS_PER_CONNECTION={per_connection} cannot hold one symbol's {per_symbol} streams"
        )
    fit = per_connection // per_symbol
    unique = list(dict.fromkeys(symbols))
    shards: list[tuple[str, ...]] = []
    by_stream: dict[str, str] = {}
    for start in range(0, len(unique), fit):
        shard: list[str] = []
        for symbol in unique[start : start + fit]:
            streams = symbol_streams(symbol, settings)
            shard += streams
            by_stream.update(dict.fromkeys(streams, symbol.upper()))
        shards.append(tuple(shard))
    return StreamPlan(shards, by_stream)
