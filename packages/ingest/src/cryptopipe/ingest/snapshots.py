"""REST depth snapshots for the order books, queued and served within the exchange's weight budget.

A resync storm (a connection carrying hundreds of symbols comes back) asks for hundreds of
snapshots at once; each ``GET /api/v3/depth`` costs weight, and Binance bans an IP that spends
more than its limit per minute. :class:`SnapshotQueue` takes requests (one outstanding per symbol,
first come first served) and sends them from a few workers, each only once the
:class:`~cryptopipe.ingest.book.weight.WeightBudget` has room: every wait is counted, by cause. A
429/418 stops every worker for its ``Retry-After``; a failed request is asked again after a backoff.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from cryptopipe.ingest.book.weight import WeightBudget, depth_weight
from cryptopipe.observability import metrics as m
from cryptopipe.runtime import Backoff, RateLimitedLog
from cryptopipe.schemas import DecodeError, DepthSnapshot, decode_depth_snapshot

logger = logging.getLogger(__name__)

#: Longest ``Retry-After`` honoured as given; a longer one is capped (and waited again if repeated).
MAX_RETRY_AFTER_S = 300.0
#: Binance's header with the IP's request weight used in the current minute.
USED_WEIGHT_HEADER = "X-MBX-USED-WEIGHT-1M"

#: Called with each snapshot received and its local receive time (µs).
SnapshotCallback = Callable[[DepthSnapshot, int], None]


@dataclass(frozen=True, slots=True)
class _Answer:
    """One request's outcome: a snapshot, or a failure label with a detail and how long to hold off."""

    snapshot: DepthSnapshot | None = None
    result: str = "failed"
    detail: str = ""
    retry_after_s: float = 0.0


def retry_after_s(value: str | None) -> float:
    """A ``Retry-After`` header in seconds (1 s when absent or unreadable), capped."""
    try:
        return min(MAX_RETRY_AFTER_S, max(0.0, float(value or 1)))
    except ValueError:
        return 1.0


class SnapshotQueue:
    """Requests for depth snapshots, served in order within ``budget``; each result to ``deliver``."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        rest_url: str,
        deliver: SnapshotCallback,
        *,
        limit: int,
        budget: WeightBudget,
        workers: int = 4,
        timeout_s: float = 10.0,
        retry_initial_s: float = 0.5,
        retry_max_s: float = 30.0,
    ) -> None:
        self.session = session
        self.url = rest_url.rstrip("/") + "/api/v3/depth"
        self.deliver = deliver
        self.limit = limit
        self.weight = depth_weight(limit)
        self.budget = budget
        self.workers = workers
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._pending: set[str] = set()
        self._backoff = Backoff(retry_initial_s, retry_max_s)
        self._budget_lock = asyncio.Lock()
        self._log = RateLimitedLog(5.0)
        self._retries: set[asyncio.Task[None]] = set()

    def request(self, symbol: str) -> None:
        """Ask for ``symbol``'s snapshot (a request already waiting for it is not repeated)."""
        if symbol in self._pending:
            return
        self._pending.add(symbol)
        self._queue.put_nowait(symbol)
        m.SNAPSHOT_QUEUE.set(len(self._pending))

    @property
    def waiting(self) -> int:
        """Symbols whose request is queued, in flight or waiting to be retried."""
        return len(self._pending)

    async def run(self) -> None:
        """Serve requests until cancelled."""
        tasks = [asyncio.create_task(self._work(), name=f"ingest-snapshots-{i}") for i in range(self.workers)]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            retries = list(self._retries)
            for retry in retries:
                retry.cancel()
            await asyncio.gather(*tasks, *retries, return_exceptions=True)

    async def _work(self) -> None:
        while True:
            symbol = await self._queue.get()
            await self._spend()
            answer = await self._fetch(symbol)
            if answer.snapshot is not None:
                self._pending.discard(symbol)
                m.SNAPSHOT_QUEUE.set(len(self._pending))
                self._backoff.reset()
                self.deliver(answer.snapshot, time.time_ns() // 1000)
                continue
            self._failed(symbol, answer)

    async def _spend(self) -> None:
        """Wait until the budget lets one request go; count the wait and its cause."""
        async with self._budget_lock:
            started = time.monotonic()
            cause: str | None = None
            while (wait := self.budget.try_spend(self.weight)) > 0:
                cause = cause or ("retry_after" if self.budget.blocked() else "weight")
                await asyncio.sleep(wait)  # a deadline: only time frees weight
            if cause is not None:
                m.SNAPSHOT_WAITS.labels(cause=cause).inc()
                m.SNAPSHOT_WAIT_SECONDS.labels(cause=cause).inc(time.monotonic() - started)

    async def _fetch(self, symbol: str) -> _Answer:
        params = {"symbol": symbol, "limit": str(self.limit)}
        try:
            async with self.session.get(self.url, params=params, timeout=self.timeout) as resp:
                body = await resp.read()
                used = resp.headers.get(USED_WEIGHT_HEADER)
                if used is not None and used.isdigit():
                    self.budget.observe_used(int(used))
                    m.REST_WEIGHT_USED.set(int(used))
                if resp.status == 200:
                    return _Answer(decode_depth_snapshot(body, symbol=symbol))
                detail = f"HTTP {resp.status}: {body[:200]!r}"
                if resp.status in (418, 429):
                    return _Answer(
                        None, "rate_limited", detail, retry_after_s(resp.headers.get("Retry-After"))
                    )
                return _Answer(None, "failed", detail)
        except (aiohttp.ClientError, TimeoutError, DecodeError) as exc:
            return _Answer(None, "failed", f"{type(exc).__name__}: {exc}")

    def _failed(self, symbol: str, answer: _Answer) -> None:
        """Count the failure, and ask again: after Retry-After (every worker waits) or a backoff."""
        m.SNAPSHOT_REQUESTS.labels(result=answer.result).inc()
        if answer.result == "rate_limited":
            self.budget.block(answer.retry_after_s)
            delay = 0.0
        else:
            delay = self._backoff.next_delay()
        self._log.log(
            logger,
            logging.WARNING,
            "snapshot:" + answer.result,
            "depth snapshot of %s failed (%s); asking again in %.1f s",
            symbol,
            answer.detail,
            max(delay, answer.retry_after_s),
        )
        task = asyncio.create_task(self._again(symbol, delay), name=f"ingest-snapshot-retry-{symbol}")
        self._retries.add(task)
        task.add_done_callback(self._retries.discard)

    async def _again(self, symbol: str, delay: float) -> None:
        await asyncio.sleep(delay)  # a backoff: nothing else can signal it
        self._queue.put_nowait(symbol)
