"""Alerts in Redis: a capped, newest-first feed, each alert exactly once.

Keys (``{p}`` is ``RedisSettings.key_prefix``):

- ``{p}alerts``             list of alert JSON (wire format), newest first, capped.
- ``{p}alert-seen:{key}``   marker per ``Alert.idempotency_key`` (expires after ``seen_ttl_s``),
  set with the push in one Lua script, so a replayed alert is never pushed twice.
"""

from __future__ import annotations

import time
from typing import Any

import redis

from cryptopipe.observability import metrics as m
from cryptopipe.schemas import Alert, decode_alert, encode
from cryptopipe.store.sink import LuaScript, WriteResult, execute_with_scripts

DEFAULT_FEED_CAP = 500
DEFAULT_SEEN_TTL_S = 24 * 3600

# KEYS: feed list, then one seen-marker key per alert. ARGV: cap, ttl, then one payload per alert.
# Returns the 1-based positions of alerts already seen (not pushed again).
ALERT_SCRIPT = LuaScript(
    """
local dup = {}
for i = 2, #KEYS do
  if redis.call('SET', KEYS[i], '1', 'NX', 'EX', tonumber(ARGV[2])) then
    redis.call('LPUSH', KEYS[1], ARGV[i + 1])
  else
    dup[#dup + 1] = i - 1
  end
end
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[1]) - 1)
return dup
"""
)


class AlertSink:
    """Writes alerts from the ``alerts`` topic into the feed; one EVALSHA per batch."""

    name = "alerts"

    def __init__(
        self,
        client: redis.Redis,
        *,
        key_prefix: str = "cryptopipe:",
        feed_cap: int = DEFAULT_FEED_CAP,
        seen_ttl_s: int = DEFAULT_SEEN_TTL_S,
    ) -> None:
        self.client = client
        self.key_prefix = key_prefix
        self.feed_cap = feed_cap
        self.seen_ttl_s = seen_ttl_s
        m.prime(m.ALERT_LATENCY, {"kind": "final"}, {"kind": "early"})

    def decode(self, value: bytes) -> Alert:
        return decode_alert(value)

    def write(self, batch: list[Alert]) -> WriteResult:
        keys = [f"{self.key_prefix}alerts"] + [
            f"{self.key_prefix}alert-seen:{a.idempotency_key}" for a in batch
        ]
        pipe = self.client.pipeline(transaction=False)
        ALERT_SCRIPT.queue(pipe, keys, [self.feed_cap, self.seen_ttl_s, *(encode(a) for a in batch)])
        started = time.perf_counter()
        (dups,) = execute_with_scripts(self.client, pipe, [ALERT_SCRIPT])
        redis_seconds = time.perf_counter() - started
        written_us = time.time_ns() // 1000
        seen = {int(p) - 1 for p in dups}
        latencies = []
        for i, alert in enumerate(batch):
            if i in seen or alert.trigger_receive_time_us is None:
                continue
            latency_us = written_us - alert.trigger_receive_time_us
            m.ALERT_LATENCY.labels(kind=alert.kind).observe(latency_us / 1e6)
            latencies.append(latency_us)
        return WriteResult(len(batch) - len(seen), len(seen), written_us, redis_seconds, latencies)


class AlertStore:
    """Read side of the alert feed for the dashboard and the CLI."""

    def __init__(self, client: redis.Redis, key_prefix: str = "cryptopipe:") -> None:
        self.client = client
        self.key_prefix = key_prefix

    def recent(self, limit: int = 50) -> list[Alert]:
        """The newest ``limit`` alerts, newest first."""
        if limit <= 0:
            return []
        raw: list[Any] = self.client.lrange(f"{self.key_prefix}alerts", 0, limit - 1)
        return [decode_alert(item if isinstance(item, bytes) else item.encode()) for item in raw]
