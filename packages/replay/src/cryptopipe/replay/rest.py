"""The replay exchange's REST market data: ``/api/v3/ping``, ``time``, ``exchangeInfo``, ``aggTrades``.

Parameters, limits and error codes follow Binance Spot; ``X-MBX-TIME-UNIT: MICROSECOND`` switches
times to µs. ``aggTrades`` serves exactly what the tape played, so backfill can be checked id for id.
Every ``/api/`` request is delayed each way (``delay_ms``, or the request's and response's own
delays, with their jitter: :mod:`.network`) and costs its weight (:mod:`.weights`);
``/api/v3/depth`` is :mod:`.rest_depth`'s.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import web

from cryptopipe.replay.host import Host
from cryptopipe.replay.symbols import split_symbol, symbol_spec
from cryptopipe.replay.weights import WeightBudget, request_weight
from cryptopipe.replay.wire import error_response, json_response, parse_time_unit
from cryptopipe.schemas.binance import RestAggTrade, ServerTime, encode_json

_ONE_HOUR_MS = 3_600_000


class RestError(Exception):
    """A request Binance would refuse: answered with ``{"code", "msg"}`` and ``status``."""

    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.status = status


def int_param(request: web.Request, name: str) -> int | None:
    value = request.query.get(name)
    if value is None or value == "":
        return None
    if not value.isdigit() or len(value) > 20:
        raise RestError(
            -1100, f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'."
        )
    return int(value)


def _rest_micros(request: web.Request) -> bool:
    micros = parse_time_unit(request.headers.get("X-MBX-TIME-UNIT"))
    if micros is None:
        raise RestError(-1100, "Invalid X-MBX-TIME-UNIT header; expected MILLISECOND or MICROSECOND.")
    return micros


def _format8(value: str) -> str:
    return f"{float(value):.8f}"


def symbol_param(host: Host, request: web.Request, *, required: bool) -> str | None:
    """The ``symbol`` parameter, upper-cased: -1102 when missing (and ``required``), -1121 when the
    exchange does not list it (a listed symbol that is not TRADING is valid)."""
    symbol = request.query.get("symbol")
    if not symbol:
        if required:
            raise RestError(-1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
        return None
    symbol = symbol.upper()
    if symbol not in host.tape.symbols and symbol not in host.tape.inactive_symbols:
        raise RestError(-1121, "Invalid symbol.")
    return symbol


class RestApi:
    """The REST routes of ``host``, each delayed by ``delay_ms`` on the way in and on the way out,
    and each charged its weight against the exchange's budget."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.weights = WeightBudget(host.config.rest_weight_limit, time.monotonic)

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/api/v3/ping", self._ping)
        router.add_get("/api/v3/time", self._time)
        router.add_get("/api/v3/exchangeInfo", self._exchange_info)
        router.add_get("/api/v3/aggTrades", self._agg_trades)

    @web.middleware
    async def delay_middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        rest = request.path.startswith("/api/")
        network = self.host.network
        delay = rest and network.conditions.active
        if delay:
            await asyncio.sleep(network.rest_request_s())
        wait_s = (
            self.weights.spend(request_weight(request.path, request.query.get("limit"))) if rest else None
        )
        response: web.StreamResponse
        if wait_s is not None:
            self.host.stats.rest_weight_refused += 1
            limit = self.weights.limit
            response = error_response(
                -1003,
                f"Too much request weight used; current limit is {limit} request weight per 1 MINUTE. "
                "Please use WebSocket Streams for live updates to avoid polling the API.",
                429,
            )
            response.headers["Retry-After"] = str(wait_s)
        else:
            try:
                response = await handler(request)
            except RestError as exc:
                response = error_response(exc.code, exc.msg, exc.status)
        if rest:
            response.headers["X-MBX-USED-WEIGHT-1M"] = str(self.weights.used)
        if delay:
            await asyncio.sleep(network.rest_response_s())
        return response

    async def _ping(self, request: web.Request) -> web.Response:
        return json_response(b"{}")

    async def _time(self, request: web.Request) -> web.Response:
        now = self.host.now_us()
        return json_response(
            encode_json(ServerTime(serverTime=now if _rest_micros(request) else now // 1000))
        )

    async def _exchange_info(self, request: web.Request) -> web.Response:
        micros = _rest_micros(request)
        tape = self.host.tape
        chosen = sorted(tape.symbols | tape.inactive_symbols)
        one = symbol_param(self.host, request, required=False)
        if one is not None:
            chosen = [one]
        elif "symbols" in request.query:
            try:
                listed = msgspec.json.decode(request.query["symbols"], type=list[str])
            except msgspec.MsgspecError:
                raise RestError(-1100, "Illegal characters found in parameter 'symbols'.") from None
            unknown = [s for s in listed if s.upper() not in tape.symbols | tape.inactive_symbols]
            if unknown:
                raise RestError(-1121, "Invalid symbol.")
            chosen = [s.upper() for s in listed]
        now = self.host.now_us()
        body = {
            "timezone": "UTC",
            "serverTime": now if micros else now // 1000,
            "rateLimits": [
                {
                    "rateLimitType": "REQUEST_WEIGHT",
                    "interval": "MINUTE",
                    "intervalNum": 1,
                    "limit": self.host.config.rest_weight_limit or 6000,
                },
                {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
            ],
            "exchangeFilters": [],
            "symbols": [self._symbol_info(s, s in tape.symbols) for s in chosen],
        }
        return json_response(encode_json(body))

    @staticmethod
    def _symbol_info(symbol: str, trading: bool) -> dict[str, Any]:
        """One symbol's entry; one that is not TRADING is in a ``BREAK``, as delisted pairs are."""
        base, quote = split_symbol(symbol)
        spec = symbol_spec(symbol)
        return {
            "symbol": symbol,
            "status": "TRADING" if trading else "BREAK",
            "baseAsset": base,
            "baseAssetPrecision": 8,
            "quoteAsset": quote,
            "quotePrecision": 8,
            "quoteAssetPrecision": 8,
            "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
            "icebergAllowed": True,
            "ocoAllowed": True,
            "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": False,
            "filters": [
                {
                    "filterType": "PRICE_FILTER",
                    "minPrice": _format8(spec.tick),
                    "maxPrice": "1000000.00000000",
                    "tickSize": _format8(spec.tick),
                },
                {
                    "filterType": "LOT_SIZE",
                    "minQty": _format8(spec.lot),
                    "maxQty": "9000.00000000",
                    "stepSize": _format8(spec.lot),
                },
            ],
            "permissions": [],
            "permissionSets": [["SPOT"]],
        }

    async def _agg_trades(self, request: web.Request) -> web.Response:
        """``GET /api/v3/aggTrades``: Binance's parameters, limits and error codes."""
        micros = _rest_micros(request)
        symbol = symbol_param(self.host, request, required=True)
        assert symbol is not None
        from_id = int_param(request, "fromId")
        start = int_param(request, "startTime")
        end = int_param(request, "endTime")
        limit = int_param(request, "limit")
        if limit is None:
            limit = 500
        if not 1 <= limit <= 1000:
            raise RestError(-1130, "Data sent for parameter 'limit' is not valid (1..1000).")
        if from_id is not None and (start is not None or end is not None):
            raise RestError(-1128, "Combination of optional parameters invalid.")
        hour = _ONE_HOUR_MS * (1000 if micros else 1)
        if start is not None and end is not None:
            if end - start > hour:
                raise RestError(-1127, "More than 1 hours between startTime and endTime.")
        elif start is not None:
            end = start + hour
        elif end is not None:
            start = max(0, end - hour)
        scale = 1 if micros else 1000
        start_us = start * scale if start is not None else None
        end_us = end * scale + (scale - 1) if end is not None else None
        hist = self.host.tape.histories.get(symbol)
        found = (
            hist.query(from_id=from_id, start_us=start_us, end_us=end_us, limit=limit)
            if hist is not None
            else []
        )
        items = [
            RestAggTrade(a=a.a, p=a.p, q=a.q, f=a.f, l=a.l, T=a.T if micros else a.T // 1000, m=a.m, M=a.M)
            for a in found
        ]
        return json_response(encode_json(items))
