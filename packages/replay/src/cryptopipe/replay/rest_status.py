"""``GET /replay/v1/status``: where the tape is (not Binance's API; for the tools that run the exchange).

``cryptopipe up`` asks it to say when a replayed tape has finished, and to stop there with
``--exit-on-finish``. The answer is the exchange's counters: ``started``, ``finished``, ``error``,
``trades_played``, ``frames_sent``, ...
"""

from __future__ import annotations

import dataclasses

import msgspec
from aiohttp import web

from cryptopipe.replay.host import Host
from cryptopipe.replay.wire import json_response

STATUS_PATH = "/replay/v1/status"


class StatusApi:
    """``/replay/v1/status`` for ``host``'s tape."""

    def __init__(self, host: Host) -> None:
        self.host = host

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get(STATUS_PATH, self.status)

    async def status(self, _request: web.Request) -> web.Response:
        return json_response(msgspec.json.encode(dataclasses.asdict(self.host.stats)))
