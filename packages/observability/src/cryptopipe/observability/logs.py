"""Rate limits for log lines that a misbehaving peer or an outage can repeat without end.

librdkafka reports every failed connection attempt through the client's ``logger`` (about ten
lines a second per client while a broker is down). :class:`RateLimitFilter` lets the first
line of each kind through, then at most one per ``interval_s``, saying how many it held back.
A "kind" is the logger plus librdkafka's facility (``FAIL``, ``SESSTMOUT``, ...), the first
argument of its log calls, or the message template for other loggers.
"""

from __future__ import annotations

import logging
import threading
import time


class RateLimitFilter(logging.Filter):
    """Drop repeats of a log line's kind within ``interval_s``; the next one says how many."""

    def __init__(self, interval_s: float = 10.0) -> None:
        super().__init__()
        self.interval_s = interval_s
        self._last: dict[tuple[str, str], float] = {}
        self._held: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        kind = str(record.args[0]) if isinstance(record.args, tuple) and record.args else str(record.msg)
        key = (record.name, kind)
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.interval_s:
                self._held[key] = self._held.get(key, 0) + 1
                return False
            self._last[key] = now
            held = self._held.pop(key, 0)
        if held:
            record.msg = f"{record.msg} (%d similar lines in the last %g s held back)"
            record.args = (*(record.args if isinstance(record.args, tuple) else ()), held, self.interval_s)
        return True


def rate_limited_logger(name: str, interval_s: float = 10.0) -> logging.Logger:
    """``logging.getLogger(name)`` with one :class:`RateLimitFilter` installed (idempotent)."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, RateLimitFilter) for f in logger.filters):
        logger.addFilter(RateLimitFilter(interval_s))
    return logger
