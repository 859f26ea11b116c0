"""The order-book Kafka contract: ``book-updates`` records and ``book-snapshots`` checkpoints.

From these alone a consumer that starts at any time rebuilds the exact book at any update id the
topics still retain (docs/order-books.md tells the whole story). Per symbol, in order, on
``book-updates`` (key = the upper-case symbol, Java's partitioner):

- :class:`BookResetRecord` (``"type": "reset"``) opens a sync *epoch*: the whole book at
  ``update_id``. A resync is always one of these: an explicit discontinuity, never a silent jump.
- :class:`BookUpdateRecord` (``"type": "update"``) is one applied diff of that epoch: the changed
  levels of updates ``first_update_id`` (U) .. ``final_update_id`` (u), quantity 0 removing a level.

``book-snapshots`` is compacted, key = symbol: each symbol's latest :class:`BookCheckpoint`, a whole
book plus the ``book-updates`` offset to resume from. Values are compact JSON with ``"v": 1`` and a
``"type"``; prices and quantities are decimal strings, never JSON numbers; times are integer µs.
A reset record::

    {"type":"reset","v":1,"symbol":"BTCUSDT","epoch":1723075200000000,"reason":"initial",
     "update_id":51460750812,"bids":[["61000.01","0.5"]],"asks":[["61000.02","1.2"]],
     "event_time_us":null,"receive_time_us":1723075200123456}

An update record::

    {"type":"update","v":1,"symbol":"BTCUSDT","epoch":1723075200000000,"first_update_id":51460750813,
     "final_update_id":51460750815,"bids":[["61000.01","0"]],"asks":[],
     "event_time_us":1723075200200000,"receive_time_us":1723075200201234}

The decoders raise nothing but :class:`DecodeError`; its ``reason`` is one of ``malformed_json``,
``empty_frame``, ``unsupported_encoding``, ``invalid_utf8``, ``too_deeply_nested``,
``unknown_version`` (``v`` is not 1), ``unknown_type`` (a ``type`` this version does not know),
``invalid_book_record`` / ``invalid_book_checkpoint`` (a missing or mistyped field),
``price_not_string`` / ``quantity_not_string`` (an amount sent as a JSON number) and ``invalid_value``
(a value that breaks the contract: ``U > u``, a negative id, a whole book not sorted best first or
holding a zero quantity, ...).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, Literal, TypeVar

import msgspec

from cryptopipe.schemas.binance import _MAX_INT64
from cryptopipe.schemas.book import Level, _amount_reason, _levels, _text, _unreadable
from cryptopipe.schemas.errors import DecodeError

#: Why an epoch began, as ingest labels its resets (a label, so a new reason never breaks a reader):
#: ``initial`` the first sync of the symbol; ``gap`` an event skipped past the book's id + 1;
#: ``stale_snapshot`` the first event after the snapshot did not follow it; ``crossed`` the book's best
#: bid reached its best ask; ``reconnect`` the connection was replaced with no proof of continuity;
#: ``requested`` an operator or the service asked.
RESET_REASONS = ("initial", "gap", "stale_snapshot", "crossed", "reconnect", "requested")

#: The ``type`` of each record and checkpoint, usable as a metric label.
BookRecordType = Literal["reset", "update", "checkpoint"]
BOOK_RECORD_TYPES: tuple[BookRecordType, ...] = ("reset", "update", "checkpoint")

#: What an update means to a book at some update id (see :func:`continuity`).
Continuity = Literal["next", "stale", "gap"]

_REASON = re.compile(r"[a-z][a-z0-9_]{0,39}")


def _check_int(name: str, value: int | None, minimum: int = 0) -> None:
    if value is not None and not minimum <= value <= _MAX_INT64:
        raise ValueError(f"{name} out of range: {value}")


def _check_book(symbol: str, bids: Sequence[Level], asks: Sequence[Level]) -> None:
    """A whole book: bids strictly descending, asks strictly ascending, no zero quantity."""
    if not symbol:
        raise ValueError("symbol is empty")
    for side, levels, sign in (("bids", bids, -1), ("asks", asks, 1)):
        previous: Decimal | None = None
        for price, quantity in levels:
            if not quantity:
                raise ValueError(f"{side} hold a zero quantity at {price}: a whole book has none")
            if previous is not None and (price - previous) * sign <= 0:
                raise ValueError(f"{side} are not sorted best first at {price}")
            previous = price


class BookResetRecord(msgspec.Struct, frozen=True, kw_only=True):
    """The start of a sync epoch: ``symbol``'s whole book as of update ``update_id``.

    ``epoch`` grows at every (re)sync of the symbol and is never reused while the topic lives
    (:func:`epoch_base`). ``update_id`` is the book's id: the snapshot's ``lastUpdateId``, moved on by
    any buffered events applied before this record was made. ``bids`` are best (highest) first,
    ``asks`` lowest first. ``event_time_us`` is the exchange time of the last event in the book
    (None when nothing followed the snapshot: REST carries no time); ``receive_time_us`` when the
    snapshot arrived. ``reason`` is one of :data:`RESET_REASONS` (or a newer label).
    """

    symbol: str
    epoch: int
    reason: str
    update_id: int
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    event_time_us: int | None
    receive_time_us: int

    def __post_init__(self) -> None:
        _check_int("epoch", self.epoch)
        _check_int("update_id", self.update_id)
        _check_int("receive_time_us", self.receive_time_us)
        _check_int("event_time_us", self.event_time_us)
        if not _REASON.fullmatch(self.reason):
            raise ValueError(f"reason is not a label: {self.reason[:60]!r}")
        _check_book(self.symbol, self.bids, self.asks)


class BookUpdateRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One diff of epoch ``epoch``: the absolute quantities of the levels updates U..u changed.

    Within an epoch, each update's ``first_update_id`` is the previous one's ``final_update_id`` + 1;
    the first after the reset satisfies ``U <= reset.update_id + 1 <= u``. A quantity of 0 removes the
    level (one the book does not hold is fine). The attribute names match
    :class:`~cryptopipe.schemas.DepthDiff`'s, so a book applies either.
    """

    symbol: str
    epoch: int
    first_update_id: int
    final_update_id: int
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    event_time_us: int
    receive_time_us: int

    def __post_init__(self) -> None:
        if not self.symbol:
            raise ValueError("symbol is empty")
        _check_int("epoch", self.epoch)
        _check_int("first_update_id", self.first_update_id)
        _check_int("final_update_id", self.final_update_id, minimum=self.first_update_id)
        _check_int("event_time_us", self.event_time_us)
        _check_int("receive_time_us", self.receive_time_us)


class BookCheckpoint(msgspec.Struct, frozen=True, kw_only=True):
    """``symbol``'s whole book at ``update_id`` in epoch ``epoch``, and where to resume from.

    The record at offset ``updates_offset`` of ``book-updates`` partition ``updates_partition`` is
    the first one after the record that produced this book: seek there and apply what follows.
    ``checkpoint_time_us`` is when the producer wrote it. Levels are sorted as in a reset.
    """

    symbol: str
    epoch: int
    update_id: int
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    event_time_us: int | None
    updates_partition: int
    updates_offset: int
    checkpoint_time_us: int

    def __post_init__(self) -> None:
        _check_int("epoch", self.epoch)
        _check_int("update_id", self.update_id)
        _check_int("event_time_us", self.event_time_us)
        _check_int("updates_partition", self.updates_partition)
        _check_int("updates_offset", self.updates_offset)
        _check_int("checkpoint_time_us", self.checkpoint_time_us)
        _check_book(self.symbol, self.bids, self.asks)


BookRecord = BookResetRecord | BookUpdateRecord


def continuity(book_update_id: int, update: BookUpdateRecord) -> Continuity:
    """What ``update`` is to a book of its epoch at ``book_update_id``.

    ``stale``: every update in it is already in the book (``u <= id``), skip it; ``gap``: updates
    were missed (``U > id + 1``), the book is broken until the next reset; ``next``: apply it
    (``U == id + 1``, or the overlap ``U <= id < u``, safe because levels carry absolute quantities).
    """
    if update.final_update_id <= book_update_id:
        return "stale"
    if update.first_update_id > book_update_id + 1:
        return "gap"
    return "next"


def epoch_base(now_us: int) -> int:
    """The first epoch a producer starting at ``now_us`` (wall clock, µs) uses; it adds 1 per reset.

    A later producer starts above every epoch an earlier one used, unless the earlier one reset a
    symbol more than once per microsecond of its life, so epochs are never reused.
    """
    return now_us


_RawLevels = list[tuple[str, str]]


class _Wire(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    v: Literal[1] = 1
    symbol: str
    epoch: int


class _ResetWire(_Wire, frozen=True, kw_only=True, tag="reset"):
    reason: str
    update_id: int
    bids: _RawLevels
    asks: _RawLevels
    event_time_us: int | None
    receive_time_us: int


class _UpdateWire(_Wire, frozen=True, kw_only=True, tag="update"):
    first_update_id: int
    final_update_id: int
    bids: _RawLevels
    asks: _RawLevels
    event_time_us: int
    receive_time_us: int


class _CheckpointWire(_Wire, frozen=True, kw_only=True, tag="checkpoint"):
    update_id: int
    bids: _RawLevels
    asks: _RawLevels
    event_time_us: int | None
    updates_partition: int
    updates_offset: int
    checkpoint_time_us: int


_ENCODER = msgspec.json.Encoder()
_RECORD_DECODER = msgspec.json.Decoder(_ResetWire | _UpdateWire)
_CHECKPOINT_DECODER = msgspec.json.Decoder(_CheckpointWire)
_W = TypeVar("_W", _ResetWire | _UpdateWire, _CheckpointWire)


def _raw(levels: Sequence[Level]) -> _RawLevels:
    return [(_text(price), _text(quantity)) for price, quantity in levels]


_WIRE_OF: dict[type, type[_Wire]] = {
    BookResetRecord: _ResetWire,
    BookUpdateRecord: _UpdateWire,
    BookCheckpoint: _CheckpointWire,
}
_MESSAGE_OF = {wire: message for message, wire in _WIRE_OF.items()}


def encode_book(message: BookResetRecord | BookUpdateRecord | BookCheckpoint) -> bytes:
    """The record value for a ``book-updates`` record or a ``book-snapshots`` checkpoint."""
    fields = msgspec.structs.asdict(message)
    fields["bids"], fields["asks"] = _raw(message.bids), _raw(message.asks)
    return _ENCODER.encode(_WIRE_OF[type(message)](**fields))


def _wire(decoder: msgspec.json.Decoder[_W], payload: bytes, what: str) -> _W:
    try:
        return decoder.decode(payload)
    except msgspec.ValidationError as exc:
        text = str(exc)
        if "`$.v`" in text and "Invalid" in text:
            reason = "unknown_version"
        elif "`$.type`" in text and "Invalid" in text:
            reason = "unknown_type"
        else:
            reason = _amount_reason(text) or "invalid_" + what
        raise DecodeError(reason, text, payload) from exc
    except (UnicodeDecodeError, msgspec.DecodeError, RecursionError) as exc:
        raise _unreadable(exc, payload) from exc


def _message(wire: _Wire, payload: bytes) -> Any:
    """The typed message a decoded wire struct stands for, its levels parsed and its contract checked."""
    fields = msgspec.structs.asdict(wire)
    del fields["v"]
    fields["bids"] = _levels(fields["bids"], "bids", payload)
    fields["asks"] = _levels(fields["asks"], "asks", payload)
    try:
        return _MESSAGE_OF[type(wire)](**fields)
    except ValueError as exc:
        raise DecodeError("invalid_value", str(exc), payload) from exc


def decode_book_record(payload: bytes) -> BookRecord:
    """Decode a ``book-updates`` record value; raises :class:`DecodeError` with a reason label."""
    record: BookRecord = _message(_wire(_RECORD_DECODER, payload, "book_record"), payload)
    return record


def decode_book_checkpoint(payload: bytes) -> BookCheckpoint:
    """Decode a ``book-snapshots`` value; raises :class:`DecodeError` with a reason label."""
    checkpoint: BookCheckpoint = _message(_wire(_CHECKPOINT_DECODER, payload, "book_checkpoint"), payload)
    return checkpoint
