"""Logging for every service: configured once at the entry point, and rate limited where a peer
or an outage can repeat a line without end.

- :func:`configure_logging`: the one handler setup (``basicConfig`` unless the host application
  already configured logging) and the level of the ``cryptopipe`` loggers.
- :class:`RateLimiter`: the one rule: the first line of each key passes, then at most one per
  ``interval_s``, and the next one that passes says how many were held back.
- Two ways to apply it: :class:`RateLimitedLog` for our own keyed warnings
  (``log.log(logger, WARNING, "kafka-down", "...")``), and :class:`RateLimitFilter` on a logger
  whose lines we do not write ourselves: librdkafka reports every failed connection attempt
  through the client's ``logger`` (about ten lines a second per client while a broker is down).
  There the key is librdkafka's facility (``FAIL``, ``SESSTMOUT``, ...), the first argument of its
  log calls, or the message template for other loggers.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
#: Libraries whose INFO lines say nothing a user of cryptopipe needs: kept at WARNING or above.
NOISY_LOGGERS = ("py4j", "urllib3", "asyncio")


def configure_logging(level: str = "INFO") -> None:
    """Install a stderr handler (unless logging is configured already) and set our loggers' level."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=level, format=LOG_FORMAT, stream=sys.stderr)
    logging.getLogger("cryptopipe").setLevel(level)
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))


class RateLimiter:
    """One line per key per ``interval_s``; thread-safe."""

    def __init__(self, interval_s: float = 10.0, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._last: dict[object, float] = {}
        self._held: dict[object, int] = {}
        self._lock = threading.Lock()

    def allow(self, key: object) -> int | None:
        """``None`` to stay quiet, else the number of lines held back since the last one passed."""
        now = self._clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.interval_s:
                self._held[key] = self._held.get(key, 0) + 1
                return None
            self._last[key] = now
            return self._held.pop(key, 0)


def _held_note(held: int, interval_s: float) -> str:
    return f"({held} similar lines in the last {interval_s:g} s held back)"


class RateLimitedLog(RateLimiter):
    """Logs the first line of each key, then at most one per ``interval_s``, with a count."""

    def log(self, logger: logging.Logger, level: int, key: str, message: str, *args: object) -> None:
        """Log ``message % args`` unless a line with this key was logged within the interval."""
        held = self.allow(key)
        if held is None:
            return
        if held:
            logger.log(level, "%s %s", message % args, _held_note(held, self.interval_s))
        else:
            logger.log(level, message, *args)


class RateLimitFilter(logging.Filter):
    """Drop repeats of a log line's kind within ``interval_s``; the next one says how many."""

    def __init__(self, interval_s: float = 10.0) -> None:
        super().__init__()
        self.limiter = RateLimiter(interval_s)

    @property
    def interval_s(self) -> float:
        return self.limiter.interval_s

    def filter(self, record: logging.LogRecord) -> bool:
        kind = str(record.args[0]) if isinstance(record.args, tuple) and record.args else str(record.msg)
        held = self.limiter.allow((record.name, kind))
        if held is None:
            return False
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
