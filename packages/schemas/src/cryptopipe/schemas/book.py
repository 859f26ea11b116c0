"""Binance Spot's order-book payloads (diff depth, book ticker, REST depth snapshot) and our typed forms.

Parsed once at the edge into :class:`DepthDiff`, :class:`BookTicker` and :class:`DepthSnapshot`:
prices and quantities are ``Decimal`` (a quantity of 0 means "remove this level"), times are integer
microseconds. The ``*_payload`` functions render Binance's JSON back from those forms, for the replay
exchange. A ``<symbol>@depth@100ms`` (or ``@depth``) event, as Binance documents it::

    {"e":"depthUpdate","E":1672515782136,"s":"BNBBTC","U":157,"u":160,
     "b":[["0.0024","10"]],"a":[["0.0026","100"]]}

A ``<symbol>@bookTicker`` event (spot has no ``E``)::

    {"u":400900217,"s":"BNBUSDT","b":"25.35190000","B":"31.21000000","a":"25.36520000","A":"40.66000000"}

And ``GET /api/v3/depth``: ``{"lastUpdateId":1027024,"bids":[["4.00000000","431.00000000"]],"asks":[...]}``.

The decoders raise nothing but :class:`DecodeError`. Besides the structural reasons of
:mod:`cryptopipe.schemas.binance` (``malformed_json``, ``empty_frame``, ``unsupported_encoding``,
``invalid_utf8``, ``too_deeply_nested``), its ``reason`` is one of:

- ``invalid_depthUpdate`` / ``invalid_bookTicker`` / ``invalid_rest_depth``: a missing or mistyped field;
- ``price_not_string`` / ``quantity_not_string``: an amount sent as a JSON number, never converted;
- ``invalid_value``: a value no exchange sends (price <= 0, quantity < 0, NaN, ``U > u``, an id or
  time out of range).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Literal, TypeVar

import msgspec

from cryptopipe.schemas.binance import (
    _MAX_INT64,
    TimeUnit,
    _bad_decimal,
    _malformed,
    _shown,
    _to_us,
    _too_deep,
)
from cryptopipe.schemas.errors import DecodeError

#: One price level: (price, quantity). In a diff a quantity of 0 removes the level.
Level = tuple[Decimal, Decimal]


class DepthDiff(msgspec.Struct, frozen=True, kw_only=True):
    """One diff-depth event: the absolute quantities of the levels changed by updates U..u."""

    symbol: str
    first_update_id: int
    final_update_id: int
    event_time_us: int
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]


class BookTicker(msgspec.Struct, frozen=True, kw_only=True):
    """The best bid and ask right after order-book update ``update_id``."""

    symbol: str
    update_id: int
    bid_price: Decimal
    bid_quantity: Decimal
    ask_price: Decimal
    ask_quantity: Decimal


class DepthSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """The top levels of a book as of update ``last_update_id``: bids best (highest) first, asks lowest first.

    REST's body has no symbol; the caller that asked for it names it.
    """

    symbol: str
    last_update_id: int
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]


_RawLevels = list[tuple[str, str]]
_T = TypeVar("_T")


class _DepthUpdateWire(msgspec.Struct, frozen=True, tag_field="e", tag="depthUpdate"):
    E: int
    s: str
    U: int
    u: int
    b: _RawLevels
    a: _RawLevels


class _BookTickerWire(msgspec.Struct, frozen=True):
    u: int
    s: str
    b: str
    B: str
    a: str
    A: str


class _DepthSnapshotWire(msgspec.Struct, frozen=True):
    lastUpdateId: int
    bids: _RawLevels
    asks: _RawLevels


_DEPTH_UPDATE = msgspec.json.Decoder(_DepthUpdateWire)
_BOOK_TICKER = msgspec.json.Decoder(_BookTickerWire)
_DEPTH_SNAPSHOT = msgspec.json.Decoder(_DepthSnapshotWire)
_ENCODER = msgspec.json.Encoder()

#: msgspec's message for a JSON number where an amount string belongs: which field, price or quantity.
_NUMBER_AMOUNT = re.compile(
    r"Expected `str`, got `(?:int|float)` - at `\$\.(?:(?P<level>[ab]|bids|asks)\[\d+\]\[(?P<index>[01])\]"
    r"|(?P<ticker>[bBaA]))`"
)
_TICKER_QUANTITIES = frozenset("BA")


def _amount_reason(message: str) -> str | None:
    """``price_not_string`` / ``quantity_not_string`` when msgspec met a JSON number for an amount."""
    match = _NUMBER_AMOUNT.search(message)
    if match is None:
        return None
    quantity = match["index"] == "1" if match["level"] else match["ticker"] in _TICKER_QUANTITIES
    return "quantity_not_string" if quantity else "price_not_string"


def _decode(decoder: msgspec.json.Decoder[_T], payload: bytes | str, what: str) -> _T:
    """Decode JSON, mapping every failure onto a :class:`DecodeError` reason."""
    try:
        return decoder.decode(payload)
    except msgspec.ValidationError as exc:
        text = str(exc)
        raise DecodeError(_amount_reason(text) or "invalid_" + what, text, payload) from exc
    except (UnicodeDecodeError, msgspec.DecodeError, RecursionError) as exc:
        raise _unreadable(exc, payload) from exc


def _unreadable(exc: Exception, payload: bytes | str) -> DecodeError:
    """The error for a payload that is not even readable JSON, labelled as the trade parsers label it."""
    if isinstance(exc, UnicodeDecodeError):
        return DecodeError("invalid_utf8", str(exc), payload)
    if isinstance(exc, RecursionError):
        return _too_deep(exc, payload)
    assert isinstance(exc, msgspec.DecodeError)
    return _malformed(exc, payload)


def _amount(text: str, *, price: bool, where: str | int, payload: bytes | str) -> Decimal:
    """One price (> 0) or quantity (>= 0) from Binance's decimal string; ``where`` names it in errors."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        value = Decimal("NaN")
    if _bad_decimal(value, allow_zero=not price):
        kind = "price" if price else "quantity"
        raise DecodeError("invalid_value", f"{kind} at {where} out of range: {_shown(text)}", payload)
    return value


#: The range :func:`cryptopipe.schemas.binance.invalid_field` allows a nonzero amount (|exponent| <= 30).
_SMALLEST = Decimal("1e-30")
_TOO_LARGE = Decimal("1e31")


def _levels(raw: _RawLevels, side: str, payload: bytes | str) -> tuple[Level, ...]:
    """``[[price, quantity], ...]`` as Decimals; one pass, and a second only to name a bad value."""
    levels = []
    try:
        for price_text, quantity_text in raw:
            price, quantity = Decimal(price_text), Decimal(quantity_text)
            if not (
                _SMALLEST <= price < _TOO_LARGE and (quantity.is_zero() or _SMALLEST <= quantity < _TOO_LARGE)
            ):
                break
            levels.append((price, quantity))
        else:
            return tuple(levels)
    except InvalidOperation:  # not a number, or a NaN compared
        pass
    for i, (price_text, quantity_text) in enumerate(raw):
        _amount(price_text, price=True, where=f"{side}[{i}]", payload=payload)
        _amount(quantity_text, price=False, where=f"{side}[{i}]", payload=payload)
    raise AssertionError("unreachable: a level failed the range check but passes _amount")


def _check_id(name: str, value: int, payload: bytes | str, *, minimum: int = 0) -> None:
    if not minimum <= value <= _MAX_INT64:
        raise DecodeError("invalid_value", f"field {name!r} out of range: {_shown(value)}", payload)


def decode_depth_update(payload: bytes | str, *, unit: TimeUnit = "MILLISECOND") -> DepthDiff:
    """Parse a ``depthUpdate`` event (the ``data`` of a ``@depth`` / ``@depth@100ms`` frame)."""
    wire = _decode(_DEPTH_UPDATE, payload, "depthUpdate")
    _check_id("E", wire.E, payload, minimum=1)
    _check_id("U", wire.U, payload, minimum=1)
    _check_id("u", wire.u, payload, minimum=wire.U)
    return DepthDiff(
        symbol=wire.s,
        first_update_id=wire.U,
        final_update_id=wire.u,
        event_time_us=_to_us(wire.E, unit),
        bids=_levels(wire.b, "b", payload),
        asks=_levels(wire.a, "a", payload),
    )


def decode_book_ticker(payload: bytes | str) -> BookTicker:
    """Parse a spot ``bookTicker`` event (the ``data`` of a ``@bookTicker`` frame)."""
    wire = _decode(_BOOK_TICKER, payload, "bookTicker")
    _check_id("u", wire.u, payload)
    return BookTicker(
        symbol=wire.s,
        update_id=wire.u,
        bid_price=_amount(wire.b, price=True, where="b", payload=payload),
        bid_quantity=_amount(wire.B, price=False, where="B", payload=payload),
        ask_price=_amount(wire.a, price=True, where="a", payload=payload),
        ask_quantity=_amount(wire.A, price=False, where="A", payload=payload),
    )


def decode_depth_snapshot(payload: bytes | str, *, symbol: str) -> DepthSnapshot:
    """Parse the body of ``GET /api/v3/depth?symbol=SYMBOL``."""
    wire = _decode(_DEPTH_SNAPSHOT, payload, "rest_depth")
    _check_id("lastUpdateId", wire.lastUpdateId, payload)
    return DepthSnapshot(
        symbol=symbol,
        last_update_id=wire.lastUpdateId,
        bids=_levels(wire.bids, "bids", payload),
        asks=_levels(wire.asks, "asks", payload),
    )


def _text(value: Decimal) -> str:
    """A decimal as Binance writes it: plain digits, never an exponent."""
    return format(value, "f")


def _raw_levels(levels: Sequence[Level]) -> _RawLevels:
    return [(_text(price), _text(quantity)) for price, quantity in levels]


def depth_update_payload(diff: DepthDiff, *, unit: TimeUnit = "MILLISECOND") -> bytes:
    """The ``depthUpdate`` JSON Binance sends for ``diff`` (``E`` truncated to milliseconds by default)."""
    event_time = diff.event_time_us if unit == "MICROSECOND" else diff.event_time_us // 1000
    return _ENCODER.encode(
        _DepthUpdateWire(
            E=event_time,
            s=diff.symbol,
            U=diff.first_update_id,
            u=diff.final_update_id,
            b=_raw_levels(diff.bids),
            a=_raw_levels(diff.asks),
        )
    )


def book_ticker_payload(ticker: BookTicker) -> bytes:
    """The spot ``bookTicker`` JSON Binance sends for ``ticker``."""
    amounts = (ticker.bid_price, ticker.bid_quantity, ticker.ask_price, ticker.ask_quantity)
    return _ENCODER.encode(_BookTickerWire(ticker.update_id, ticker.symbol, *map(_text, amounts)))


def depth_snapshot_payload(snapshot: DepthSnapshot) -> bytes:
    """The ``GET /api/v3/depth`` body for ``snapshot``."""
    return _ENCODER.encode(
        _DepthSnapshotWire(
            lastUpdateId=snapshot.last_update_id,
            bids=_raw_levels(snapshot.bids),
            asks=_raw_levels(snapshot.asks),
        )
    )


def depth_stream(symbol: str, interval_ms: Literal[100, 1000] = 100) -> str:
    """``btcusdt@depth@100ms``, or ``btcusdt@depth`` for Binance's 1,000 ms variant."""
    suffix = "@depth@100ms" if interval_ms == 100 else "@depth"
    return symbol.lower() + suffix


def book_ticker_stream(symbol: str) -> str:
    """``btcusdt@bookTicker``."""
    return symbol.lower() + "@bookTicker"
