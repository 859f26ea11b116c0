"""The messages that travel between services, and their Kafka wire format.

Wire format (decided by measurement, see ``cryptopipe bench codec`` and docs/architecture.md):
key = the symbol as ASCII bytes; value = compact JSON with a version tag ``"v"``. JSON won
because Spark's native Kafka source can parse it with ``from_json`` inside the JVM, humans can
read it with any Kafka tool, and msgspec encodes/decodes it within ~1.5x of MessagePack, a
difference that is noise next to a broker round trip.

Prices and quantities are ``Decimal`` parsed once at the edge from Binance's strings and
carried as strings on the wire: no float rounding ever touches a price until a ratio is computed.
Timestamps are integer microseconds since the Unix epoch, with ``_us`` in the name.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal, TypeVar

import msgspec

from cryptopipe.schemas.errors import DecodeError

TradeKind = Literal["trade", "aggTrade"]
AlertKind = Literal["final", "early"]
Side = Literal["BUY", "SELL"]

WIRE_VERSION = 1

_T = TypeVar("_T")


class Trade(msgspec.Struct, frozen=True, kw_only=True, tag_field="v", tag=WIRE_VERSION):
    """One exchange trade (``@trade``) or aggregated trade (``@aggTrade``).

    ``trade_id`` is Binance's ``t`` for trades and ``a`` for aggTrades; ids are consecutive per
    symbol and stream kind, which is what gap detection relies on.
    """

    symbol: str
    trade_id: int
    price: Decimal
    quantity: Decimal
    buyer_is_maker: bool
    trade_time_us: int
    event_time_us: int
    receive_time_us: int
    kind: TradeKind = "aggTrade"
    first_trade_id: int | None = None
    last_trade_id: int | None = None
    backfilled: bool = False


class Alert(msgspec.Struct, frozen=True, kw_only=True, tag_field="v", tag=WIRE_VERSION):
    """A price-change alert for one (rule, symbol, window).

    ``side`` follows the seed's convention: ``SELL`` when the price rose over the window,
    ``BUY`` when it fell. ``kind`` is ``final`` (the watermark closed the window) or ``early``
    (the running change crossed the threshold while the window was open).
    """

    rule: str
    symbol: str
    kind: AlertKind
    side: Side
    window_start_us: int
    window_end_us: int
    open: Decimal
    close: Decimal
    pct_change: float
    raised_time_us: int
    trigger_receive_time_us: int | None = None

    @property
    def idempotency_key(self) -> str:
        """Identity of the alert: replays and restarts of the same window map to the same key."""
        return f"{self.rule}|{self.symbol}|{self.window_start_us}|{self.kind}"


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True, tag_field="v", tag=WIRE_VERSION):
    """A frame or record that could not be processed, kept for inspection instead of lost."""

    source: str
    reason: str
    detail: str
    payload: str
    receive_time_us: int


_ENCODER = msgspec.json.Encoder(decimal_format="string")
_TRADE_DECODER = msgspec.json.Decoder(Trade)
_ALERT_DECODER = msgspec.json.Decoder(Alert)
_DEAD_LETTER_DECODER = msgspec.json.Decoder(DeadLetter)


def encode(message: Trade | Alert | DeadLetter) -> bytes:
    """Encode a message as the Kafka record value."""
    return _ENCODER.encode(message)


def encode_key(symbol: str) -> bytes:
    """The Kafka record key: the symbol, so all of one symbol's messages share a partition."""
    return symbol.encode("ascii")


def _decode(decoder: msgspec.json.Decoder[_T], payload: bytes, what: str) -> _T:
    try:
        return decoder.decode(payload)
    except msgspec.ValidationError as exc:
        text = str(exc)
        reason = "unknown_version" if "Invalid value" in text and "`$.v`" in text else "invalid_" + what
        raise DecodeError(reason, text, payload) from exc
    except UnicodeDecodeError as exc:
        raise DecodeError("invalid_utf8", str(exc), payload) from exc
    except msgspec.DecodeError as exc:
        raise DecodeError("malformed_json", str(exc), payload) from exc


def decode_trade(payload: bytes) -> Trade:
    """Decode a ``prices`` record value; raises :class:`DecodeError` with a reason label."""
    return _decode(_TRADE_DECODER, payload, "trade")


def decode_alert(payload: bytes) -> Alert:
    """Decode an ``alerts`` record value; raises :class:`DecodeError` with a reason label."""
    return _decode(_ALERT_DECODER, payload, "alert")


def decode_dead_letter(payload: bytes) -> DeadLetter:
    """Decode a dead-letter record value."""
    return _decode(_DEAD_LETTER_DECODER, payload, "dead_letter")
