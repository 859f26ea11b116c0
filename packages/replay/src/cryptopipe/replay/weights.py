"""REST request weight, counted as Binance counts it, against one budget per exchange.

Each request costs its endpoint's weight (``/api/v3/depth`` by its ``limit``); every answer carries
the weight used in the last minute as ``X-MBX-USED-WEIGHT-1M``, and a request that would go over
``rest_weight_limit`` is refused with HTTP 429, code -1003 and ``Retry-After`` (seconds). Binance
counts per calendar minute; we count over a sliding 60 s, which is never more lenient.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable

#: Weights from Binance Spot's REST documentation.
ENDPOINT_WEIGHTS = {
    "/api/v3/ping": 1,
    "/api/v3/time": 1,
    "/api/v3/exchangeInfo": 20,
    "/api/v3/aggTrades": 4,
}
WINDOW_S = 60.0


def depth_weight(limit: int) -> int:
    """``/api/v3/depth``'s weight: limit 1-100 -> 5, 101-500 -> 25, 501-1000 -> 50, else 250."""
    if limit <= 100:
        return 5
    if limit <= 500:
        return 25
    if limit <= 1000:
        return 50
    return 250


def request_weight(path: str, limit: str | None) -> int:
    """What a request costs; an unknown path costs 1, a depth request with a bad limit 5."""
    if path == "/api/v3/depth":
        return depth_weight(int(limit)) if limit is not None and limit.isdigit() else 5
    return ENDPOINT_WEIGHTS.get(path, 1)


class WeightBudget:
    """The weight spent in the last 60 s, against ``limit`` (0 = unlimited)."""

    def __init__(self, limit: int, clock: Callable[[], float]) -> None:
        self.limit = limit
        self.clock = clock
        self.used = 0
        self._spent: deque[tuple[float, int]] = deque()

    def _expire(self, now: float) -> None:
        spent = self._spent
        while spent and spent[0][0] <= now - WINDOW_S:
            self.used -= spent.popleft()[1]

    def spend(self, weight: int) -> int | None:
        """Spend ``weight`` now; None if it fits, else the seconds to wait (it is then not spent)."""
        now = self.clock()
        self._expire(now)
        if self.limit and self.used + weight > self.limit:
            freed = 0
            for at, cost in self._spent:
                freed += cost
                if self.used - freed + weight <= self.limit:
                    return max(1, math.ceil(at + WINDOW_S - now))
            return math.ceil(WINDOW_S)
        self._spent.append((now, weight))
        self.used += weight
        return None
