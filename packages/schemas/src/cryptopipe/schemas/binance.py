"""Binance Spot's stream and REST payloads, and their conversion to :class:`Trade`.

Shared by the replay exchange (which emits them) and ingest (which parses them), so both speak
exactly the same protocol. Sample ``@aggTrade`` payload, as Binance documents it::

    {"e":"aggTrade","E":1672515782136,"s":"BNBBTC","a":12345,"p":"0.001","q":"100",
     "f":100,"l":105,"T":1672515782136,"m":true,"M":true}

With ``timeUnit=MICROSECOND`` the ``E`` and ``T`` fields are microseconds, otherwise milliseconds.
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


_FRAME = msgspec.json.Decoder(_Frame)
_EVENT = msgspec.json.Decoder(StreamEvent)
_TAG = msgspec.json.Decoder(_EventTag)
_REST_AGG = msgspec.json.Decoder(list[RestAggTrade])
_ENCODER = msgspec.json.Encoder(decimal_format="string")


def _to_us(value: int, unit: TimeUnit) -> int:
    return value if unit == "MICROSECOND" else value * 1000


def event_to_trade(event: StreamEvent, *, receive_time_us: int, unit: TimeUnit) -> Trade:
    """Convert a parsed stream event into a :class:`Trade`."""
    if isinstance(event, AggTradeEvent):
        return Trade(
            symbol=event.s,
            trade_id=event.a,
            price=event.p,
            quantity=event.q,
            buyer_is_maker=event.m,
            trade_time_us=_to_us(event.T, unit),
            event_time_us=_to_us(event.E, unit),
            receive_time_us=receive_time_us,
            kind="aggTrade",
            first_trade_id=event.f,
            last_trade_id=event.l,
        )
    return Trade(
        symbol=event.s,
        trade_id=event.t,
        price=event.p,
        quantity=event.q,
        buyer_is_maker=event.m,
        trade_time_us=_to_us(event.T, unit),
        event_time_us=_to_us(event.E, unit),
        receive_time_us=receive_time_us,
        kind="trade",
    )


def rest_agg_to_trade(item: RestAggTrade, *, symbol: str, receive_time_us: int, unit: TimeUnit) -> Trade:
    """A backfilled aggTrade: marked ``backfilled`` so it stays out of the latency histograms."""
    t = _to_us(item.T, unit)
    return Trade(
        symbol=symbol,
        trade_id=item.a,
        price=item.p,
        quantity=item.q,
        buyer_is_maker=item.m,
        trade_time_us=t,
        event_time_us=t,
        receive_time_us=receive_time_us,
        kind="aggTrade",
        first_trade_id=item.f,
        last_trade_id=item.l,
        backfilled=True,
    )


class Frame(msgspec.Struct, frozen=True):
    """A combined-stream frame split into its stream name and raw ``data`` bytes."""

    stream: str
    data: bytes


def split_frame(payload: bytes | str) -> Frame:
    """Split ``{"stream": ..., "data": {...}}``; raises :class:`DecodeError` if it is not one."""
    try:
        frame = _FRAME.decode(payload)
    except msgspec.ValidationError as exc:
        raise DecodeError("not_a_stream_frame", str(exc), payload) from exc
    except UnicodeDecodeError as exc:
        raise DecodeError("invalid_utf8", str(exc), payload) from exc
    except msgspec.DecodeError as exc:
        raise DecodeError("malformed_json", str(exc), payload) from exc
    return Frame(frame.stream, bytes(frame.data))


def parse_event(data: bytes) -> StreamEvent | None:
    """Parse a stream event. Returns ``None`` for event kinds we do not consume (depth, ...).

    Raises :class:`DecodeError` for a trade/aggTrade event that is malformed.
    """
    try:
        event = _EVENT.decode(data)
    except msgspec.ValidationError as exc:
        try:
            tag = _TAG.decode(data).e
        except (msgspec.ValidationError, msgspec.DecodeError):
            tag = ""
        if tag in ("trade", "aggTrade"):
            raise DecodeError("invalid_" + tag, str(exc), data) from exc
        if not tag:
            raise DecodeError("unknown_event", str(exc), data) from exc
        return None
    except UnicodeDecodeError as exc:
        raise DecodeError("invalid_utf8", str(exc), data) from exc
    except msgspec.DecodeError as exc:
        raise DecodeError("malformed_json", str(exc), data) from exc
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


def _check_ranges(event: StreamEvent | RestAggTrade, payload: bytes) -> None:
    """Reject values no exchange sends, here, once, rather than poisoning a window downstream."""
    if (field := invalid_field(event)) is not None:
        raise DecodeError("invalid_value", f"field {field!r} out of range: {getattr(event, field)}", payload)


def parse_rest_agg_trades(payload: bytes) -> list[RestAggTrade]:
    """Parse the body of ``GET /api/v3/aggTrades``."""
    try:
        items = _REST_AGG.decode(payload)
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise DecodeError("invalid_rest_aggtrades", str(exc), payload) from exc
    for item in items:
        _check_ranges(item, payload)
    return items


def encode_json(obj: object) -> bytes:
    """Encode Binance payloads (decimals as strings, as Binance sends them)."""
    return _ENCODER.encode(obj)


def stream_name(symbol: str, kind: Literal["trade", "aggTrade"]) -> str:
    """``btcusdt@aggTrade``: Binance stream names use the lower-case symbol."""
    return f"{symbol.lower()}@{kind}"
