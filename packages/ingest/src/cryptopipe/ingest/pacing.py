"""Pacing primitives that keep us inside Binance's connection limits.

- :class:`TokenBucket`: at most ``rate`` control messages per second per connection.
- :class:`AttemptWindow`: at most ``limit`` connection attempts per sliding 5 minutes, shared
  by every connection of the process (Binance counts attempts per IP).
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable


class _Pacer:
    """:meth:`acquire` waits, one caller at a time, until :meth:`try_acquire` returns 0.0."""

    _lock: asyncio.Lock

    def try_acquire(self) -> float:
        """Take one now and return 0.0, or return how long to wait before trying again."""
        raise NotImplementedError

    async def acquire(self) -> None:
        async with self._lock:
            wait = self.try_acquire()
            while wait > 0:
                await asyncio.sleep(wait)  # a deadline, not a condition: nothing else can signal it
                wait = self.try_acquire()


class TokenBucket(_Pacer):
    """``rate`` tokens per second, holding at most ``capacity``; :meth:`acquire` waits for one.

    With capacity 1 and rate r, any 1-second window holds at most r + 1 acquisitions.
    """

    def __init__(self, rate: float, capacity: float = 1.0, *, clock: Callable[[], float] = time.monotonic):
        self.rate = rate
        self.capacity = capacity
        self._clock = clock
        self._tokens = capacity
        self._updated = clock()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    def try_acquire(self) -> float:
        """Take a token and return 0.0, or return how long to wait for the next one."""
        self._refill()
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate


class AttemptWindow(_Pacer):
    """At most ``limit`` events in any sliding ``window_s``; :meth:`acquire` waits for room."""

    def __init__(
        self, limit: int, window_s: float = 300.0, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._times: collections.deque[float] = collections.deque()
        self._lock = asyncio.Lock()

    def try_acquire(self) -> float:
        """Record an attempt and return 0.0, or return how long until one is allowed."""
        now = self._clock()
        while self._times and now - self._times[0] >= self.window_s:
            self._times.popleft()
        if len(self._times) < self.limit:
            self._times.append(now)
            return 0.0
        return self._times[0] + self.window_s - now
