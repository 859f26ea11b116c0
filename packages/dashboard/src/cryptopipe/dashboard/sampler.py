"""The server's own history keeper: a thread in the Streamlit process that reads the newest trades
from Redis every refresh and folds them into one :class:`MarketHistory`, whether a page is open or not.

``python -m cryptopipe.dashboard.serve`` (what ``cryptopipe dashboard`` runs) starts it before
Streamlit, in the same process; the page finds it with :func:`running`. Without it (Streamlit started
some other way, or Streamlit's AppTest) the page folds in what it reads itself, so its history then
covers only the time a page was open, and the page says which.
"""

from __future__ import annotations

import logging
import threading

import redis

from cryptopipe.dashboard.history import MarketHistory
from cryptopipe.dashboard.settings import DashboardSettings
from cryptopipe.runtime import rate_limited_logger
from cryptopipe.schemas import RedisSettings
from cryptopipe.store.prices import PriceStore
from cryptopipe.store.sink import connect_redis

logger = logging.getLogger(__name__)
outage_log = rate_limited_logger(__name__ + ".outage", 60.0)

_running: Sampler | None = None


class Sampler(threading.Thread):
    """Every ``refresh_seconds``: each symbol's newest ``history_points`` trades into ``history``."""

    def __init__(self, settings: DashboardSettings, redis_settings: RedisSettings) -> None:
        super().__init__(name="dashboard-history", daemon=True)
        self.settings = settings
        self.redis_settings = redis_settings
        self.history = MarketHistory()
        self.failed_reads = 0
        self._halt = threading.Event()

    def sample(self, store: PriceStore) -> None:
        limit = self.settings.history_points
        for symbol in self.settings.symbols or store.symbols():
            rows = store.history(symbol, limit)
            trades = [(int(r["trade_time_us"]), float(r["price"])) for r in rows]
            self.history.add(symbol, trades, full=len(rows) >= limit)

    def run(self) -> None:
        url = self.redis_settings.url.get_secret_value()
        client = connect_redis(url, socket_timeout=self.settings.redis_timeout_seconds)
        store = PriceStore(client, self.redis_settings.key_prefix)
        try:
            while not self._halt.wait(self.settings.refresh_seconds):
                try:
                    self.sample(store)
                except redis.RedisError as exc:
                    self.failed_reads += 1
                    outage_log.warning("cannot read the price history from Redis (%s); retrying", exc)
        finally:
            client.close()

    def stop(self) -> None:
        self._halt.set()
        self.join(10)


def start(settings: DashboardSettings, redis_settings: RedisSettings) -> Sampler | None:
    """Start this process's sampler (None without REDIS_URL: the page says what to set)."""
    global _running
    if not redis_settings.url.get_secret_value():
        return None
    _running = Sampler(settings, redis_settings)
    _running.start()
    logger.info("keeping the price history from Redis every %g s", settings.refresh_seconds)
    return _running


def running() -> MarketHistory | None:
    """The history this process's sampler keeps, if one was started."""
    return _running.history if _running is not None and _running.is_alive() else None
