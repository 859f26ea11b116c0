"""Binance's REST request weight, spent within a budget per minute, without I/O.

Every ``GET /api/v3/depth`` costs weight (:func:`depth_weight`), and Binance refuses an IP that
spends more than its limit per minute (HTTP 429, then 418 bans). :class:`WeightBudget` answers
"may I spend ``w`` now, or how long must I wait": at most ``limit`` in any sliding window of our own
spending, and, after the exchange reported its count (``X-MBX-USED-WEIGHT-1M``, which includes every
other client on the IP), at most ``limit`` counting from that figure until its minute is surely
over. A 429/418's ``Retry-After`` stops all spending until it has passed.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

#: Binance Spot's documented weights of ``GET /api/v3/depth`` by ``limit``: (largest limit, weight).
_DEPTH_WEIGHTS = ((100, 5), (500, 25), (1000, 50), (5000, 250))
#: The largest ``limit`` ``GET /api/v3/depth`` accepts.
MAX_DEPTH_LIMIT = 5000


def depth_weight(limit: int) -> int:
    """The request weight of ``GET /api/v3/depth?limit=limit`` (1..5000)."""
    for largest, weight in _DEPTH_WEIGHTS:
        if 1 <= limit <= largest:
            return weight
    raise ValueError(f"depth limit must be 1..{MAX_DEPTH_LIMIT}, got {limit}")


class WeightBudget:
    """At most ``limit`` weight per ``window_s``: :meth:`try_spend` takes it or says how long to wait."""

    def __init__(
        self, limit: int, window_s: float = 60.0, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if limit < 1 or window_s <= 0:
            raise ValueError(f"limit must be >= 1 and window_s > 0, got {limit}, {window_s}")
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._spent: deque[tuple[float, int]] = deque()
        #: The exchange's counts, (when, used), each binding for a window after it was seen.
        self._reports: deque[tuple[float, int]] = deque()
        self._blocked_until = 0.0

    def _expire(self, now: float) -> None:
        while self._spent and now - self._spent[0][0] >= self.window_s:
            self._spent.popleft()
        while self._reports and now - self._reports[0][0] >= self.window_s:
            self._reports.popleft()

    def used(self) -> int:
        """The weight counted against the budget now: ours in the window, or the exchange's figure plus
        what we spent since, whichever is larger."""
        now = self._clock()
        self._expire(now)
        used = sum(weight for _, weight in self._spent)
        for reported_at, reported in self._reports:
            used = max(used, reported + sum(weight for at, weight in self._spent if at >= reported_at))
        return used

    def try_spend(self, weight: int) -> float:
        """Spend ``weight`` and return 0.0, or return the seconds to wait before trying again."""
        if not 1 <= weight <= self.limit:
            raise ValueError(f"weight must be 1..{self.limit}, got {weight}")
        now = self._clock()
        if now < self._blocked_until:
            return self._blocked_until - now
        if self.used() + weight <= self.limit:
            self._spent.append((now, weight))
            return 0.0
        return max(self._next_room(now, weight), 1e-3)

    def _next_room(self, now: float, weight: int) -> float:
        """When enough weight leaves the window (the earliest moment worth trying again)."""
        for reported_at, reported in self._reports:
            if reported + weight > self.limit:
                return reported_at + self.window_s - now
        excess = self.used() + weight - self.limit
        freed = 0
        for at, spent in self._spent:
            freed += spent
            if freed >= excess:
                return at + self.window_s - now
        return self.window_s  # pragma: no cover - the window always holds the excess

    def observe_used(self, used: int) -> None:
        """The exchange's ``X-MBX-USED-WEIGHT-1M``: its count of this minute, every client of the IP."""
        self._reports.append((self._clock(), max(0, used)))

    def blocked(self) -> bool:
        """Whether a ``Retry-After`` is holding every request back now."""
        return self._clock() < self._blocked_until

    def block(self, seconds: float) -> None:
        """Spend nothing for ``seconds`` (a 429/418's ``Retry-After``)."""
        self._blocked_until = max(self._blocked_until, self._clock() + max(0.0, seconds))
