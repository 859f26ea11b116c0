"""Binance Spot's stream and REST payloads, and their conversion to :class:`Trade`.

Shared by the replay exchange (which emits them) and ingest (which parses them), so both speak
exactly the same protocol. Sample ``@aggTrade`` payload, as Binance documents it::

    {"e":"aggTrade","E":1672515782136,"s":"BNBBTC","a":12345,"p":"0.001","q":"100",
     "f":100,"l":105,"T":1672515782136,"m":true,"M":true}

With ``timeUnit=MICROSECOND`` the ``E`` and ``T`` fields are microseconds, otherwise milliseconds.

Payloads come from a peer and are hostile until parsed: the parsers here raise nothing but
:class:`DecodeError`, whose ``reason`` is one of these stable labels:

- ``malformed_json``: not JSON (truncated, bad syntax, a lone ``\\ud800`` escape, a NUL byte, ...);
- ``empty_frame``: nothing but whitespace;
- ``unsupported_encoding``: JSON in UTF-16/UTF-32 or with a byte order mark (it must be UTF-8);
- ``invalid_utf8``: bytes that are not UTF-8 (overlong forms, encoded surrogates, ...);
- ``too_deeply_nested``: arrays/objects nested deeper than the decoder follows (its recursion limit);
- ``not_a_stream_frame``: JSON, but not ``{"stream": str, "data": ...}``;
- ``unknown_event``: ``data`` has no ``e`` tag (or is not an object);
- ``invalid_trade`` / ``invalid_aggTrade``: a trade event with missing or mistyped fields;
- ``price_not_string`` / ``quantity_not_string``: ``p`` / ``q`` sent as a JSON number. Binance
  always sends them as decimal strings, and a number may have been through a float on the
  sender's side, so it is rejected rather than silently becoming a price;
- ``invalid_value``: a value no exchange sends (price <= 0, NaN, negative id, time out of range);
- ``invalid_rest_aggtrades``: a ``GET /api/v3/aggTrades`` body of the wrong shape.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

import msgspec

from cryptopipe.schemas.errors import DecodeError
from cryptopipe.schemas.messages import Trade

TimeUnit = Literal["MILLISECOND", "MICROSECOND"]


class TradeEvent(msgspec.Struct, frozen=True, tag_field="e", tag="trade"):
    """``<symbol>@trade``: one trade. ``M`` is absent on some Binance versions."""

    E: int
    s: str
    t: int
    p: Decimal
    q: Decimal
    T: int
    m: bool
    M: bool = True


class AggTradeEvent(msgspec.Struct, frozen=True, tag_field="e", tag="aggTrade"):
    """``<symbol>@aggTrade``: trades of one taker order at one price, ids ``f``..``l``."""

    E: int
    s: str
    a: int
    p: Decimal
    q: Decimal
    f: int
    l: int  # noqa: E741 - Binance's field name
    T: int
    m: bool
    M: bool = True


class RestAggTrade(msgspec.Struct, frozen=True):
    """One element of ``GET /api/v3/aggTrades``; like the stream event without ``e``/``E``/``s``."""

    a: int
    p: Decimal
    q: Decimal
    f: int
    l: int  # noqa: E741 - Binance's field name
    T: int
    m: bool
    M: bool = True


class ServerTime(msgspec.Struct, frozen=True):
    """``GET /api/v3/time``."""

    serverTime: int


class ControlResponse(msgspec.Struct, frozen=True):
    """Reply to SUBSCRIBE/UNSUBSCRIBE/LIST_SUBSCRIPTIONS: ``{"result": null, "id": 1}``."""

    id: int | str | None
    result: list[str] | None = None


class ErrorBody(msgspec.Struct, frozen=True):
    """Binance's error shape, on REST and on the WebSocket control channel."""

    code: int
    msg: str


StreamEvent = TradeEvent | AggTradeEvent


class _Frame(msgspec.Struct, frozen=True):
    stream: str
    data: msgspec.Raw


class _EventTag(msgspec.Struct, frozen=True):
    e: str = ""


class _AmountTokens(msgspec.Struct, frozen=True):
    """The raw JSON tokens of ``p`` and ``q``, to tell ``"1.5"`` from ``1.5`` (both decode as Decimal)."""

    p: msgspec.Raw = msgspec.Raw()
    q: msgspec.Raw = msgspec.Raw()


_FRAME = msgspec.json.Decoder(_Frame)
_EVENT = msgspec.json.Decoder(StreamEvent)
_TAG = msgspec.json.Decoder(_EventTag)
_AMOUNTS = msgspec.json.Decoder(_AmountTokens)
_REST_AGG = msgspec.json.Decoder(list[RestAggTrade])
_REST_AMOUNTS = msgspec.json.Decoder(list[_AmountTokens])
_ENCODER = msgspec.json.Encoder(decimal_format="string")


def _to_us(value: int, unit: TimeUnit) -> int:
    return value if unit == "MICROSECOND" else value * 1000


def _agg_trade(
    item: AggTradeEvent | RestAggTrade,
    *,
    symbol: str,
    event_time_us: int,
    receive_time_us: int,
    unit: TimeUnit,
) -> Trade:
    """An aggTrade as a :class:`Trade`; a REST item is a backfill (it stays out of the latency histograms)."""
    return Trade(
        symbol=symbol,
        trade_id=item.a,
        price=item.p,
        quantity=item.q,
        buyer_is_maker=item.m,
        trade_time_us=_to_us(item.T, unit),
        event_time_us=event_time_us,
        receive_time_us=receive_time_us,
        kind="aggTrade",
        first_trade_id=item.f,
        last_trade_id=item.l,
        backfilled=isinstance(item, RestAggTrade),
    )


def event_to_trade(event: StreamEvent, *, receive_time_us: int, unit: TimeUnit) -> Trade:
    """Convert a parsed stream event into a :class:`Trade`."""
    event_time_us = _to_us(event.E, unit)
    if isinstance(event, AggTradeEvent):
        return _agg_trade(
            event, symbol=event.s, event_time_us=event_time_us, receive_time_us=receive_time_us, unit=unit
        )
    return Trade(
        symbol=event.s,
        trade_id=event.t,
        price=event.p,
        quantity=event.q,
        buyer_is_maker=event.m,
        trade_time_us=_to_us(event.T, unit),
        event_time_us=event_time_us,
        receive_time_us=receive_time_us,
        kind="trade",
    )


def rest_agg_to_trade(item: RestAggTrade, *, symbol: str, receive_time_us: int, unit: TimeUnit) -> Trade:
    """A backfilled aggTrade: marked ``backfilled`` so it stays out of the latency histograms.

    REST has no event time, so it is the trade time.
    """
    return _agg_trade(
        item, symbol=symbol, event_time_us=_to_us(item.T, unit), receive_time_us=receive_time_us, unit=unit
    )


class Frame(msgspec.Struct, frozen=True):
    """A combined-stream frame split into its stream name and raw ``data`` bytes."""

    stream: str
    data: bytes


def _too_deep(exc: RecursionError, payload: bytes | str) -> DecodeError:
    return DecodeError("too_deeply_nested", f"nesting exceeds the decoder's recursion limit ({exc})", payload)


_BOMS = (
    (b"\xef\xbb\xbf", "UTF-8 with a byte order mark"),
    (b"\x00\x00\xfe\xff", "UTF-32BE"),
    (b"\xff\xfe\x00\x00", "UTF-32LE"),
    (b"\xfe\xff", "UTF-16BE"),
    (b"\xff\xfe", "UTF-16LE"),
)


#: Which of the first four bytes are NUL, for JSON whose first two characters are ASCII (RFC 4627).
_NUL_PATTERNS: dict[tuple[bool, ...], str] = {
    (True, True, True, False): "UTF-32BE",
    (False, True, True, True): "UTF-32LE",
    (True, False, True, False): "UTF-16BE",
    (False, True, False, True): "UTF-16LE",
}


def _unsupported_encoding(payload: bytes) -> str | None:
    """The encoding of JSON that is not plain UTF-8 (a BOM, or RFC 4627's NUL patterns), or None."""
    for bom, name in _BOMS:
        if payload.startswith(bom):
            return name
    if len(payload) < 4:
        return None
    return _NUL_PATTERNS.get(tuple(byte == 0 for byte in payload[:4]))


def _malformed(exc: msgspec.DecodeError, payload: bytes | str) -> DecodeError:
    """``malformed_json``, or the more precise ``empty_frame`` / ``unsupported_encoding``."""
    raw = payload.encode("utf-8", "replace") if isinstance(payload, str) else bytes(payload)
    if not raw.strip():
        return DecodeError("empty_frame", f"{len(raw)} bytes of whitespace", payload)
    if (encoding := _unsupported_encoding(raw)) is not None:
        return DecodeError("unsupported_encoding", f"{encoding}; JSON must be UTF-8 ({exc})", payload)
    return DecodeError("malformed_json", str(exc), payload)


def split_frame(payload: bytes | str) -> Frame:
    """Split ``{"stream": ..., "data": {...}}``; raises :class:`DecodeError` if it is not one."""
    try:
        frame = _FRAME.decode(payload)
    except msgspec.ValidationError as exc:
        raise DecodeError("not_a_stream_frame", str(exc), payload) from exc
    except UnicodeDecodeError as exc:
        raise DecodeError("invalid_utf8", str(exc), payload) from exc
    except msgspec.DecodeError as exc:
        raise _malformed(exc, payload) from exc
    except RecursionError as exc:
        raise _too_deep(exc, payload) from exc
    return Frame(frame.stream, bytes(frame.data))


def _event_tag(data: bytes) -> str:
    """The ``e`` of an event, or "" when it has none (or it is not a string)."""
    try:
        return _TAG.decode(data).e
    except UnicodeDecodeError as exc:
        raise DecodeError("invalid_utf8", str(exc), data) from exc
    except msgspec.DecodeError:  # ValidationError included
        return ""
    except RecursionError as exc:
        raise _too_deep(exc, data) from exc


def _check_amount_tokens(tokens: _AmountTokens, payload: bytes) -> None:
    """Reject ``p``/``q`` sent as JSON numbers: only Binance's decimal strings become prices."""
    for name, token, reason in (("p", tokens.p, "price_not_string"), ("q", tokens.q, "quantity_not_string")):
        raw = bytes(token)
        if raw and not raw.startswith(b'"'):
            number = raw[:40].decode("ascii", "replace")
            raise DecodeError(reason, f"field {name!r} is the JSON number {number}, not a string", payload)


def parse_event(data: bytes) -> StreamEvent | None:
    """Parse a stream event. Returns ``None`` for event kinds we do not consume (depth, ...).

    Raises :class:`DecodeError` for a trade/aggTrade event that is malformed, including one whose
    price or quantity is a JSON number (``price_not_string`` / ``quantity_not_string``) rather
    than Binance's decimal string: the number is never converted.
    """
    try:
        event: StreamEvent = _EVENT.decode(data)
    except msgspec.ValidationError as exc:
        tag = _event_tag(data)
        if tag in ("trade", "aggTrade"):
            raise DecodeError("invalid_" + tag, str(exc), data) from exc
        if not tag:
            raise DecodeError("unknown_event", str(exc), data) from exc
        return None
    except UnicodeDecodeError as exc:
        raise DecodeError("invalid_utf8", str(exc), data) from exc
    except msgspec.DecodeError as exc:
        raise _malformed(exc, data) from exc
    except RecursionError as exc:
        raise _too_deep(exc, data) from exc
    # The event decoded, so the JSON is valid and shallow enough; the tokens decode too.
    _check_amount_tokens(_AMOUNTS.decode(data), data)
    _check_ranges(event, data)
    return event


_MAX_INT64 = 2**63 - 1
#: Decimal exponents beyond this are not prices or quantities, whatever the payload claims.
_MAX_EXPONENT = 30


def _bad_decimal(value: Decimal, *, allow_zero: bool) -> bool:
    if not value.is_finite() or value < 0 or (value == 0 and not allow_zero):
        return True
    return value != 0 and abs(value.adjusted()) > _MAX_EXPONENT


def invalid_field(event: StreamEvent | RestAggTrade) -> str | None:
    """Name of the first field with an impossible value (price <= 0, NaN, negative id, ...), or None."""
    if _bad_decimal(event.p, allow_zero=False):
        return "p"
    if _bad_decimal(event.q, allow_zero=True):
        return "q"
    times = ("T",) if isinstance(event, RestAggTrade) else ("E", "T")
    for name in times:
        if not 0 < getattr(event, name) <= _MAX_INT64:
            return name
    ids = ("t",) if isinstance(event, TradeEvent) else ("a", "f", "l")
    for name in ids:
        if not 0 <= getattr(event, name) <= _MAX_INT64:
            return name
    if not isinstance(event, TradeEvent) and event.f > event.l:
        return "f"
    return None


def _shown(value: object) -> str:
    """A value for an error detail, short whatever its size (a peer may send 4300-digit integers)."""
    if isinstance(value, int) and not -(10**30) < value < 10**30:
        return f"{'-' if value < 0 else ''}<{value.bit_length()}-bit integer>"
    text = str(value)
    return text if len(text) <= 60 else text[:60] + "..."


def _check_ranges(event: StreamEvent | RestAggTrade, payload: bytes) -> None:
    """Reject values no exchange sends, here, once, rather than poisoning a window downstream."""
    if (field := invalid_field(event)) is not None:
        raise DecodeError(
            "invalid_value", f"field {field!r} out of range: {_shown(getattr(event, field))}", payload
        )


def parse_rest_agg_trades(payload: bytes) -> list[RestAggTrade]:
    """Parse the body of ``GET /api/v3/aggTrades``; JSON-number prices are rejected as in streams."""
    try:
        items = _REST_AGG.decode(payload)
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise DecodeError("invalid_rest_aggtrades", str(exc), payload) from exc
    except RecursionError as exc:
        raise _too_deep(exc, payload) from exc
    for tokens in _REST_AMOUNTS.decode(payload):
        _check_amount_tokens(tokens, payload)
    for item in items:
        _check_ranges(item, payload)
    return items


def encode_json(obj: object) -> bytes:
    """Encode Binance payloads (decimals as strings, as Binance sends them)."""
    return _ENCODER.encode(obj)


def stream_name(symbol: str, kind: Literal["trade", "aggTrade"]) -> str:
    """``btcusdt@aggTrade``: Binance stream names use the lower-case symbol."""
    return f"{symbol.lower()}@{kind}"
