"""``GET /api/v3/depth``: the book the tape has played, at the last update id played.

``lastUpdateId`` is the ``u`` of the last depth diff the tape played for the symbol (a recording's
snapshot before any), so the answer lines up with the depth stream exactly as Binance's does.
``limit`` defaults to 100 and is cut to 5,000, as Binance's current documentation says; below 1 it
is error -1130. While the exchange knows no book for a symbol (a recording before its snapshot
line, one that has none, or after a gap in the recording) the answer is HTTP 503 with code -1001,
as Binance answers when it cannot serve a request: retry later. A listed symbol that is not TRADING
has an empty book. The snapshot fault knobs count requests per symbol: the first
``depth_snapshot_fail`` get 503, the next ``depth_snapshot_stale`` a book from before any client
subscribed to the symbol's depth (when the exchange had one then), and every answer is sent
``depth_snapshot_delay_ms`` late, with the book as it was when the request arrived.
"""

from __future__ import annotations

import asyncio

import msgspec
from aiohttp import web

from cryptopipe.replay.book import LevelBook, SymbolBook
from cryptopipe.replay.host import Host
from cryptopipe.replay.rest import RestError, int_param, symbol_param
from cryptopipe.replay.wire import json_response

#: Binance's largest depth: a larger ``limit`` is cut to it.
MAX_LIMIT = 5000
_ENCODE = msgspec.json.Encoder().encode
_UNAVAILABLE = "Internal error; unable to process your request. Please try again."


class DepthApi:
    """``/api/v3/depth`` for ``host``'s books."""

    def __init__(self, host: Host) -> None:
        self.host = host

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/api/v3/depth", self.depth)

    async def depth(self, request: web.Request) -> web.Response:
        host = self.host
        symbol = symbol_param(host, request, required=True)
        assert symbol is not None
        limit = int_param(request, "limit")
        if limit is None:
            limit = 100
        if limit < 1:
            raise RestError(-1130, "Data sent for parameter 'limit' is not valid.")
        limit = min(limit, MAX_LIMIT)
        if symbol in host.tape.inactive_symbols:
            return json_response(_body(LevelBook(0), limit))
        book = self._book_for_request(host.tape.depth.state(symbol))
        body = _body(book, limit)
        delay_ms = host.config.depth_snapshot_delay_ms
        if delay_ms:
            await asyncio.sleep(delay_ms / 1000)
        return json_response(body)

    def _book_for_request(self, state: SymbolBook) -> LevelBook:
        """The book this request gets, by the fault knobs; raises the 503s."""
        config, stats = self.host.config, self.host.stats
        state.requests += 1
        n = state.requests
        if n <= config.depth_snapshot_fail:
            stats.depth_snapshots_failed += 1
            raise RestError(-1001, _UNAVAILABLE, 503)
        book = state.book
        if n <= config.depth_snapshot_fail + config.depth_snapshot_stale and state.stale is not None:
            book = state.stale
            stats.depth_snapshots_stale += 1
            if n == config.depth_snapshot_fail + config.depth_snapshot_stale:
                state.stale = None  # served its last time: free it
        if book is None:
            stats.depth_snapshots_failed += 1
            raise RestError(-1001, _UNAVAILABLE, 503)
        stats.depth_snapshots_served += 1
        return book


def _body(book: LevelBook, limit: int) -> bytes:
    bids, asks = book.top(limit)
    return b'{"lastUpdateId":%d,"bids":%s,"asks":%s}' % (book.update_id, _ENCODE(bids), _ENCODE(asks))
