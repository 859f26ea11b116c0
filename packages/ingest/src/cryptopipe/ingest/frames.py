"""Turning one WebSocket frame into a trade, a depth diff, a book ticker, a control message, or a rejection.

Everything that arrives is hostile until parsed: :meth:`FrameParser.parse` never raises for any
payload (hypothesis checks this, structural extremes included); what is not a valid trade of a
stream we subscribed to comes back as a :class:`Rejected` with a short, stable reason (a metric
label, one of :data:`REJECT_REASONS`) and a sample. Reasons beyond those of
:mod:`cryptopipe.schemas.binance`'s parsers: ``binary_frame``, ``frame_too_large``,
``unknown_stream``, ``unexpected_event`` (an event other than the stream's kind),
``symbol_mismatch`` and, only if the parser itself has a bug, ``internal_error``. Prices and
quantities sent as JSON numbers are rejected (``price_not_string`` / ``quantity_not_string``),
never converted: Binance sends decimal strings, and a float must not silently become a price.
Sample combined-stream frame (``timeUnit=MICROSECOND``)::

    {"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":1723161255343012,"s":"BTCUSDT",
     "a":3735683259,"p":"61837.63","q":"0.02","f":100,"l":105,"T":1723161255342871,"m":true,"M":true}}
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeAlias

import msgspec

from cryptopipe.schemas import (
    BookTicker,
    DecodeError,
    DepthDiff,
    Trade,
    decode_book_ticker,
    decode_depth_update,
)
from cryptopipe.schemas import binance as bn

#: Timestamps at or above this are microseconds (10**14 µs is 1973; 10**14 ms is year 5138).
_MICROSECOND_THRESHOLD = 10**14
SAMPLE_BYTES = 1024
#: Stream-name endings of the order-book streams (diff depth at 100 ms or 1,000 ms, book ticker).
_BOOK_STREAMS = ("@depth@100ms", "@depth", "@bookTicker")

#: Every reason :meth:`FrameParser.parse` gives a hostile frame (a metric label each).
REJECT_REASONS = frozenset(
    {
        "binary_frame",
        "frame_too_large",
        "empty_frame",
        "malformed_json",
        "unsupported_encoding",
        "invalid_utf8",
        "too_deeply_nested",
        "not_a_stream_frame",
        "unknown_stream",
        "unknown_event",
        "unexpected_event",
        "invalid_trade",
        "invalid_aggTrade",
        "invalid_depthUpdate",
        "invalid_bookTicker",
        "price_not_string",
        "quantity_not_string",
        "invalid_value",
        "symbol_mismatch",
    }
)
#: The last-resort reason: a bug in the parser, never a property of the frame (tests assert it).
INTERNAL_ERROR = "internal_error"


@dataclass(frozen=True, slots=True)
class Rejected:
    """A frame we cannot use. ``sample`` is the start of the payload (bytes, maybe not UTF-8)."""

    reason: str
    detail: str
    sample: bytes


@dataclass(frozen=True, slots=True)
class ServerShutdown:
    """Binance's ``serverShutdown`` event: the server is going away, reconnect now."""


@dataclass(frozen=True, slots=True)
class ControlReply:
    """Reply to a SUBSCRIBE (``{"result":null,"id":1}``) or a control-channel error."""

    id: int | str | None
    error: str | None = None


Outcome: TypeAlias = Trade | DepthDiff | BookTicker | Rejected | ServerShutdown | ControlReply

SERVER_SHUTDOWN = ServerShutdown()


class _Tag(msgspec.Struct, frozen=True):
    e: str = ""


class _Envelope(msgspec.Struct, frozen=True):
    """Any non-stream JSON object we understand: control replies and ``serverShutdown``."""

    id: int | str | msgspec.UnsetType | None = msgspec.UNSET
    result: msgspec.Raw | None = None
    error: bn.ErrorBody | None = None
    code: int | None = None
    msg: str = ""
    e: str = ""
    event: _Tag | None = None


_TAG = msgspec.json.Decoder(_Tag)
_ENVELOPE = msgspec.json.Decoder(_Envelope)


def time_unit(timestamp: int) -> bn.TimeUnit:
    """Which unit a Binance timestamp is in, from its magnitude (robust to servers ignoring timeUnit)."""
    return "MICROSECOND" if timestamp >= _MICROSECOND_THRESHOLD else "MILLISECOND"


class FrameParser:
    """Parses frames of the combined streams in ``streams`` (stream name -> upper-case symbol)."""

    def __init__(self, streams: Mapping[str, str], *, max_frame_bytes: int = 65_536) -> None:
        self.streams = dict(streams)
        self.max_frame_bytes = max_frame_bytes

    def parse(self, payload: bytes | str, receive_time_us: int, *, binary: bool = False) -> Outcome:
        """Parse one frame; ``binary`` is True for a WebSocket binary frame (Binance sends text).

        Never raises (``Exception``): a bug shows as a :class:`Rejected` ``internal_error`` that
        names the exception and where it was raised, and goes through the caller's rate-limited
        dead-letter path like any other rejection.
        """
        if isinstance(payload, bytearray | memoryview):
            payload = bytes(payload)
        elif not isinstance(payload, bytes | str):
            return Rejected(INTERNAL_ERROR, f"payload of type {type(payload).__name__}", b"")
        try:
            return self._parse_checked(payload, receive_time_us, binary)
        except Exception as exc:  # the promise: nothing a peer sends makes the parser raise
            raw = payload.encode("utf-8", "replace") if isinstance(payload, str) else payload
            return Rejected(INTERNAL_ERROR, _describe(exc), raw[:SAMPLE_BYTES])

    def _parse_checked(self, payload: bytes | str, receive_time_us: int, binary: bool) -> Outcome:
        if binary:
            sample = payload.encode("utf-8", "replace") if isinstance(payload, str) else payload
            return Rejected("binary_frame", f"{len(payload)} bytes", sample[:SAMPLE_BYTES])
        if isinstance(payload, str):
            payload = payload.encode("utf-8", "replace")
        if len(payload) > self.max_frame_bytes:
            return Rejected(
                "frame_too_large", f"{len(payload)} bytes > {self.max_frame_bytes}", payload[:SAMPLE_BYTES]
            )
        try:
            return self._parse(payload, receive_time_us)
        except UnicodeDecodeError as exc:
            return Rejected("invalid_utf8", str(exc), payload[:SAMPLE_BYTES])
        except DecodeError as exc:
            return Rejected(exc.reason, exc.detail, payload[:SAMPLE_BYTES])

    def _parse(self, payload: bytes, receive_time_us: int) -> Outcome:
        try:
            frame = bn.split_frame(payload)
        except DecodeError as exc:
            if exc.reason != "not_a_stream_frame":
                raise
            return self._parse_envelope(payload, exc)
        symbol = self.streams.get(frame.stream)
        if symbol is None:
            return Rejected(
                "unknown_stream", f"stream {frame.stream[:100]!r} not subscribed", payload[:SAMPLE_BYTES]
            )
        try:
            tag = _TAG.decode(frame.data).e
        except (msgspec.ValidationError, msgspec.DecodeError):
            tag = ""
        except RecursionError as exc:
            raise DecodeError("too_deeply_nested", str(exc), frame.data) from exc
        if tag == "serverShutdown":
            return SERVER_SHUTDOWN
        if frame.stream.endswith(_BOOK_STREAMS):
            return self._parse_book(frame.stream, frame.data, symbol, tag, payload)
        event = bn.parse_event(frame.data)
        expected = bn.AggTradeEvent if frame.stream.endswith("@aggTrade") else bn.TradeEvent
        if not isinstance(event, expected):
            return Rejected(
                "unexpected_event", f"event {tag[:50]!r} on {frame.stream}", payload[:SAMPLE_BYTES]
            )
        if event.s != symbol:
            return Rejected(
                "symbol_mismatch", f"symbol {event.s[:50]!r} on {frame.stream}", payload[:SAMPLE_BYTES]
            )
        return bn.event_to_trade(event, receive_time_us=receive_time_us, unit=time_unit(event.T))

    @staticmethod
    def _parse_book(stream: str, data: bytes, symbol: str, tag: str, payload: bytes) -> Outcome:
        """A ``depthUpdate`` (times to µs whichever unit the server used) or a ``bookTicker``."""
        outcome: DepthDiff | BookTicker
        if stream.endswith("@bookTicker"):
            outcome = decode_book_ticker(data)
        elif tag != "depthUpdate":
            return Rejected("unexpected_event", f"event {tag[:50]!r} on {stream}", payload[:SAMPLE_BYTES])
        else:
            outcome = decode_depth_update(data, unit="MICROSECOND")
            if outcome.event_time_us < _MICROSECOND_THRESHOLD:
                outcome = msgspec.structs.replace(outcome, event_time_us=outcome.event_time_us * 1000)
        if outcome.symbol != symbol:
            return Rejected(
                "symbol_mismatch", f"symbol {outcome.symbol[:50]!r} on {stream}", payload[:SAMPLE_BYTES]
            )
        return outcome

    @staticmethod
    def _parse_envelope(payload: bytes, cause: DecodeError) -> Outcome:
        try:
            envelope = _ENVELOPE.decode(payload)
        except (msgspec.ValidationError, msgspec.DecodeError):
            return Rejected(cause.reason, cause.detail, payload[:SAMPLE_BYTES])
        except RecursionError as exc:
            return Rejected("too_deeply_nested", str(exc), payload[:SAMPLE_BYTES])
        if envelope.e == "serverShutdown" or (
            envelope.event is not None and envelope.event.e == "serverShutdown"
        ):
            return SERVER_SHUTDOWN
        reply_id = None if envelope.id is msgspec.UNSET else envelope.id
        if envelope.error is not None:
            return ControlReply(reply_id, f"{str(envelope.error.code)[:40]}: {envelope.error.msg[:200]}")
        if envelope.code is not None:
            return ControlReply(reply_id, f"{str(envelope.code)[:40]}: {envelope.msg[:200]}")
        if envelope.id is msgspec.UNSET:
            return Rejected(cause.reason, cause.detail, payload[:SAMPLE_BYTES])
        return ControlReply(reply_id)


def _describe(exc: Exception) -> str:
    """One line for an unexpected exception: its type, message and where it was raised."""
    try:
        where = traceback.extract_tb(exc.__traceback__)[-1]
        return f"{type(exc).__name__}: {str(exc)[:300]} at {where.filename.rsplit('/', 1)[-1]}:{where.lineno}"
    except Exception:
        return type(exc).__name__
