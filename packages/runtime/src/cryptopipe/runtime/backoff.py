"""The one retry delay: exponential with a cap and full jitter, reset after a success.

cryptofeed's idea, plus jitter so that many clients that lost the same server do not come back in
step. ``delay(n) = uniform(0, min(cap, initial * 2**n))``.
"""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    """``next_delay()`` after each failure, ``reset()`` after a success."""

    def __init__(
        self, initial_s: float, max_s: float, *, rng: Callable[[float, float], float] = random.uniform
    ) -> None:
        if not 0 < initial_s <= max_s:
            raise ValueError(f"need 0 < initial_s <= max_s, got {initial_s} and {max_s}")
        self.initial_s = initial_s
        self.max_s = max_s
        self.failures = 0
        self._rng = rng

    def ceiling(self) -> float:
        """The upper bound of the next delay."""
        return min(self.max_s, self.initial_s * 2.0 ** min(self.failures, 62))

    def next_delay(self) -> float:
        delay = self._rng(0.0, self.ceiling())
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.failures = 0
