"""``GET /replay/v1/status`` and ``GET /metrics``: where the tape is (not Binance's API; for the tools
that run the exchange).

``cryptopipe up`` asks the status to say when a replayed tape has finished, and to stop there with
``--exit-on-finish``. The answer is the exchange's counters (``started``, ``finished``, ``error``,
``trades_played``, ``frames_sent``, ...) and ``history``: what the bounded REST trade history holds.
``/metrics`` gives the history's size to Prometheus.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import msgspec
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from cryptopipe.observability import metrics as m
from cryptopipe.replay.host import Host
from cryptopipe.replay.wire import json_response

STATUS_PATH = "/replay/v1/status"
METRICS_PATH = "/metrics"


class StatusApi:
    """``/replay/v1/status`` and ``/metrics`` for ``host``'s tape."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self._trimmed_seen = {"age": 0, "count": 0}
        for reason in self._trimmed_seen:
            m.REPLAY_HISTORY_TRIMMED.labels(reason)

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get(STATUS_PATH, self.status)
        router.add_get(METRICS_PATH, self.metrics)

    def history(self) -> dict[str, Any]:
        used = self.host.tape.history_usage()
        bounds = self.host.tape.history_bounds
        return {
            "trades": used.entries,
            "bytes_estimate": used.bytes_estimate,
            "trimmed": used.trimmed,
            "limit_per_symbol": bounds.limit,
            "seconds": bounds.seconds,
        }

    async def status(self, _request: web.Request) -> web.Response:
        body = {**dataclasses.asdict(self.host.stats), "history": self.history()}
        return json_response(msgspec.json.encode(body))

    async def metrics(self, _request: web.Request) -> web.Response:
        used = self.host.tape.history_usage()
        m.REPLAY_HISTORY_TRADES.set(used.entries)
        m.REPLAY_HISTORY_BYTES.set(used.bytes_estimate)
        for reason, total in used.trimmed.items():
            m.REPLAY_HISTORY_TRIMMED.labels(reason).inc(total - self._trimmed_seen[reason])
            self._trimmed_seen[reason] = total
        return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})
