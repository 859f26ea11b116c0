"""Binance's wire details that the WebSocket and REST sides share: stream names, the time unit and
JSON responses (bodies and ``{"code", "msg"}`` errors)."""

from __future__ import annotations

import re

from aiohttp import web

from cryptopipe.schemas.binance import ErrorBody, encode_json

_STREAM_NAME = re.compile(r"^(?:[A-Za-z0-9]+@[A-Za-z0-9_]+(?:@[A-Za-z0-9_]+)?|![A-Za-z0-9_]+(?:@arr)?)$")


def normalise_stream(name: str) -> str | None:
    """``BTCUSDT@trade`` -> ``btcusdt@trade`` (symbols are lower-case); None if not a stream name."""
    if not isinstance(name, str) or not _STREAM_NAME.match(name):
        return None
    symbol, sep, rest = name.partition("@")
    return symbol.lower() + sep + rest if not name.startswith("!") else name


def parse_time_unit(value: str | None) -> bool | None:
    """``MICROSECOND`` -> True, ``MILLISECOND``/absent -> False, anything else -> None."""
    if value is None or value == "":
        return False
    upper = value.upper()
    if upper == "MICROSECOND":
        return True
    if upper == "MILLISECOND":
        return False
    return None


def json_response(body: bytes, status: int = 200) -> web.Response:
    return web.Response(body=body, status=status, content_type="application/json")


def error_response(code: int, msg: str, status: int = 400) -> web.Response:
    """Binance's error body, ``{"code":-1100,"msg":"Illegal characters found in parameter ..."}``."""
    return json_response(encode_json(ErrorBody(code=code, msg=msg)), status)
