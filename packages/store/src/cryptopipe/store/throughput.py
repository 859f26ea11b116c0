"""Records a consumer handled per second, over a sliding window of a few seconds, as a gauge."""

from __future__ import annotations

from collections import deque

from prometheus_client import Gauge

_WINDOW_S = 5.0


class Throughput:
    """Counts batches as they are handled; :meth:`update` sets ``gauge`` to the recent rate."""

    def __init__(self, gauge: Gauge, window_s: float = _WINDOW_S) -> None:
        self._gauge = gauge
        self._window_s = window_s
        self._counts: deque[tuple[float, int]] = deque()
        self._sum = 0

    def add(self, now: float, count: int) -> None:
        self._counts.append((now, count))
        self._sum += count

    def update(self, now: float) -> None:
        """Forget what is older than the window and set the gauge to records per second."""
        while self._counts and now - self._counts[0][0] > self._window_s:
            self._sum -= self._counts.popleft()[1]
        span = max(now - self._counts[0][0], 1.0) if self._counts else 1.0
        self._gauge.set(self._sum / span)
