"""Fetching missed aggTrades from the exchange's REST API (``GET /api/v3/aggTrades``)."""

from __future__ import annotations

import asyncio
import logging

import aiohttp

from cryptopipe.ingest.errors import BackfillError
from cryptopipe.runtime import Backoff
from cryptopipe.schemas import DecodeError
from cryptopipe.schemas import binance as bn

logger = logging.getLogger(__name__)

#: Binance's maximum ``limit`` for aggTrades.
PAGE_LIMIT = 1000
_MAX_RETRY_AFTER_S = 60.0


class RestClient:
    """A small Binance REST client: one endpoint, retries with backoff, honours ``Retry-After``."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        *,
        retries: int = 5,
        timeout_s: float = 10.0,
        backoff_initial_s: float = 0.2,
        backoff_max_s: float = 5.0,
    ) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s

    async def agg_trades(
        self, symbol: str, from_id: int | None, limit: int = PAGE_LIMIT
    ) -> list[bn.RestAggTrade]:
        """One page of aggTrades starting at ``from_id`` (ascending ids); the latest ones when None."""
        params = {"symbol": symbol.upper(), "limit": str(max(1, min(limit, PAGE_LIMIT)))}
        if from_id is not None:
            params["fromId"] = str(from_id)
        headers = {"X-MBX-TIME-UNIT": "MICROSECOND"}
        url = f"{self.base_url}/api/v3/aggTrades"
        backoff = Backoff(self._backoff_initial_s, self._backoff_max_s)
        detail = ""
        for attempt in range(self.retries + 1):
            delay = 0.0
            try:
                async with self.session.get(
                    url, params=params, headers=headers, timeout=self.timeout
                ) as resp:
                    body = await resp.read()
                    if resp.status == 200:
                        page: list[bn.RestAggTrade] = bn.parse_rest_agg_trades(body)
                        return page
                    detail = f"HTTP {resp.status}: {body[:200]!r}"
                    if resp.status in (418, 429):
                        delay = _retry_after(resp.headers.get("Retry-After"))
                    elif 400 <= resp.status < 500:
                        raise BackfillError(symbol, from_id, detail)
            except (aiohttp.ClientError, TimeoutError, DecodeError) as exc:
                detail = f"{type(exc).__name__}: {exc}"
            if attempt < self.retries:
                logger.warning(
                    "aggTrades %s fromId=%s failed (%s); retry %d/%d",
                    symbol,
                    from_id,
                    detail,
                    attempt + 1,
                    self.retries,
                )
                await asyncio.sleep(max(delay, backoff.next_delay()))
        raise BackfillError(symbol, from_id, detail)


def _retry_after(value: str | None) -> float:
    try:
        return min(_MAX_RETRY_AFTER_S, max(0.0, float(value or 1)))
    except ValueError:
        return 1.0
