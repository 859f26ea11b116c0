"""The order-book Kafka contract: round trips of every record kind, the documented samples, the
continuity rule, and junk rejected with a typed DecodeError."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cryptopipe.schemas import (
    BookCheckpoint,
    BookResetRecord,
    BookUpdateRecord,
    DecodeError,
    Level,
    book_messages,
    continuity,
    decode_book_checkpoint,
    decode_book_record,
    encode_book,
)

RESET = (
    b'{"type":"reset","v":1,"symbol":"BTCUSDT","epoch":1723075200000000,"reason":"initial",'
    b'"update_id":51460750812,"bids":[["61000.01","0.5"]],"asks":[["61000.02","1.2"]],'
    b'"event_time_us":null,"receive_time_us":1723075200123456}'
)
UPDATE = (
    b'{"type":"update","v":1,"symbol":"BTCUSDT","epoch":1723075200000000,"first_update_id":51460750813,'
    b'"final_update_id":51460750815,"bids":[["61000.01","0"]],"asks":[],'
    b'"event_time_us":1723075200200000,"receive_time_us":1723075200201234}'
)
CHECKPOINT = (
    b'{"type":"checkpoint","v":1,"symbol":"BTCUSDT","epoch":7,"update_id":100,'
    b'"bids":[["2","1"],["1","3"]],"asks":[["3","1"]],"event_time_us":5,'
    b'"updates_partition":2,"updates_offset":40,"checkpoint_time_us":9}'
)

#: Every reason the module docstring lists.
REASONS = {
    "malformed_json",
    "empty_frame",
    "unsupported_encoding",
    "invalid_utf8",
    "too_deeply_nested",
    "unknown_version",
    "unknown_type",
    "invalid_book_record",
    "invalid_book_checkpoint",
    "price_not_string",
    "quantity_not_string",
    "invalid_value",
}


def test_documented_samples_decode() -> None:
    reset = decode_book_record(RESET)
    assert isinstance(reset, BookResetRecord)
    assert (reset.epoch, reset.reason, reset.update_id, reset.event_time_us) == (
        1723075200000000,
        "initial",
        51460750812,
        None,
    )
    assert reset.bids == ((Decimal("61000.01"), Decimal("0.5")),)
    update = decode_book_record(UPDATE)
    assert isinstance(update, BookUpdateRecord)
    assert (update.first_update_id, update.final_update_id) == (51460750813, 51460750815)
    assert update.bids == ((Decimal("61000.01"), Decimal(0)),)
    checkpoint = decode_book_checkpoint(CHECKPOINT)
    assert (checkpoint.updates_partition, checkpoint.updates_offset) == (2, 40)
    for payload, decode in ((RESET, decode_book_record), (UPDATE, decode_book_record)):
        assert encode_book(decode(payload)) == payload
    assert encode_book(checkpoint) == CHECKPOINT


def test_the_module_docstring_shows_the_real_encoding() -> None:
    doc = book_messages.__doc__ or ""
    compact = "".join(line.strip() for line in doc.splitlines())
    assert encode_book(decode_book_record(RESET)).decode() in compact
    assert encode_book(decode_book_record(UPDATE)).decode() in compact


@pytest.mark.parametrize(
    ("decode", "payload", "reason"),
    [
        (decode_book_record, RESET.replace(b'"v":1', b'"v":2'), "unknown_version"),
        (decode_book_record, RESET.replace(b'"reset"', b'"snapshot"'), "unknown_type"),
        (decode_book_record, CHECKPOINT, "unknown_type"),
        (decode_book_checkpoint, RESET, "unknown_type"),
        (decode_book_record, RESET.replace(b'"reason":"initial",', b""), "invalid_book_record"),
        (
            decode_book_record,
            UPDATE.replace(b'"event_time_us":1723075200200000', b'"event_time_us":null'),
            "invalid_book_record",
        ),
        (
            decode_book_checkpoint,
            CHECKPOINT.replace(b'"updates_offset":40', b'"updates_offset":"40"'),
            "invalid_book_checkpoint",
        ),
        (decode_book_record, RESET.replace(b'"61000.01"', b"61000.01"), "price_not_string"),
        (decode_book_record, UPDATE.replace(b'"0"', b"0"), "quantity_not_string"),
        (decode_book_record, UPDATE.replace(b"51460750813", b"51460750816"), "invalid_value"),
        (decode_book_record, UPDATE.replace(b'"epoch":1723075200000000', b'"epoch":-1'), "invalid_value"),
        (decode_book_record, UPDATE.replace(b'"0"', b'"-1"'), "invalid_value"),
        (decode_book_record, UPDATE.replace(b'"0"', b'"NaN"'), "invalid_value"),
        (decode_book_record, RESET.replace(b'"0.5"', b'"0"'), "invalid_value"),
        (decode_book_record, RESET.replace(b'"initial"', b'"Not A Label"'), "invalid_value"),
        (decode_book_record, RESET.replace(b'"symbol":"BTCUSDT"', b'"symbol":""'), "invalid_value"),
        (
            decode_book_checkpoint,
            CHECKPOINT.replace(b'["2","1"],["1","3"]', b'["1","3"],["2","1"]'),
            "invalid_value",
        ),
        (
            decode_book_checkpoint,
            CHECKPOINT.replace(b'["2","1"],["1","3"]', b'["2","1"],["2","3"]'),
            "invalid_value",
        ),
        (decode_book_record, RESET[:-1], "malformed_json"),
        (decode_book_record, b"  ", "empty_frame"),
        (decode_book_record, RESET.replace(b"BTCUSDT", b"BTC\xffUSDT"), "invalid_utf8"),
        (
            decode_book_checkpoint,
            b'{"type":"checkpoint","x":' + b"[" * 5000 + b"]" * 5000 + b"}",
            "too_deeply_nested",
        ),
    ],
)
def test_bad_payloads_give_their_reason(
    decode: Callable[[bytes], object], payload: bytes, reason: str
) -> None:
    with pytest.raises(DecodeError) as info:
        decode(payload)
    assert info.value.reason == reason
    assert reason in REASONS


def test_constructors_refuse_what_breaks_the_contract() -> None:
    level = (Decimal(1), Decimal(1))
    with pytest.raises(ValueError, match="final_update_id"):
        BookUpdateRecord(
            symbol="X", epoch=0, first_update_id=5, final_update_id=4, bids=(), asks=(),
            event_time_us=0, receive_time_us=0,
        )  # fmt: skip
    with pytest.raises(ValueError, match="sorted"):
        BookResetRecord(
            symbol="X", epoch=0, reason="gap", update_id=1, bids=(level, level), asks=(),
            event_time_us=None, receive_time_us=0,
        )  # fmt: skip


def _update(first: int, final: int) -> BookUpdateRecord:
    return BookUpdateRecord(
        symbol="X", epoch=1, first_update_id=first, final_update_id=final, bids=(), asks=(),
        event_time_us=1, receive_time_us=1,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("first", "final", "expected"),
    [(11, 12, "next"), (9, 12, "next"), (10, 10, "stale"), (3, 9, "stale"), (12, 13, "gap")],
)
def test_continuity_against_a_book_at_10(first: int, final: int, expected: str) -> None:
    assert continuity(10, _update(first, final)) == expected


PRICES = st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal("1e12"), places=8)
QUANTITIES = st.decimals(min_value=Decimal(0), max_value=Decimal("1e12"), places=8)
POSITIVE_QUANTITIES = st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal("1e12"), places=8)
IDS = st.integers(min_value=0, max_value=2**63 - 1)
TIMES = st.integers(min_value=0, max_value=2**63 - 1)
SYMBOLS = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=12)
DIFF_LEVELS = st.lists(st.tuples(PRICES, QUANTITIES), max_size=8).map(tuple)


@st.composite
def whole_book(draw: st.DrawFn) -> tuple[tuple[Level, ...], tuple[Level, ...]]:
    """Sides sorted best first, distinct prices, no zero quantity."""
    prices = draw(st.lists(PRICES, max_size=16, unique_by=lambda p: p.normalize()))
    quantities = [draw(POSITIVE_QUANTITIES) for _ in prices]
    levels = sorted(zip(prices, quantities, strict=True))
    split = draw(st.integers(min_value=0, max_value=len(levels)))
    return tuple(reversed(levels[:split])), tuple(levels[split:])


@st.composite
def resets(draw: st.DrawFn) -> BookResetRecord:
    bids, asks = draw(whole_book())
    return BookResetRecord(
        symbol=draw(SYMBOLS),
        epoch=draw(IDS),
        reason=draw(st.sampled_from(book_messages.RESET_REASONS)),
        update_id=draw(IDS),
        bids=bids,
        asks=asks,
        event_time_us=draw(st.none() | TIMES),
        receive_time_us=draw(TIMES),
    )


@st.composite
def updates(draw: st.DrawFn) -> BookUpdateRecord:
    first = draw(IDS)
    return BookUpdateRecord(
        symbol=draw(SYMBOLS),
        epoch=draw(IDS),
        first_update_id=first,
        final_update_id=draw(st.integers(min_value=first, max_value=2**63 - 1)),
        bids=draw(DIFF_LEVELS),
        asks=draw(DIFF_LEVELS),
        event_time_us=draw(TIMES),
        receive_time_us=draw(TIMES),
    )


@st.composite
def checkpoints(draw: st.DrawFn) -> BookCheckpoint:
    bids, asks = draw(whole_book())
    return BookCheckpoint(
        symbol=draw(SYMBOLS),
        epoch=draw(IDS),
        update_id=draw(IDS),
        bids=bids,
        asks=asks,
        event_time_us=draw(st.none() | TIMES),
        updates_partition=draw(st.integers(min_value=0, max_value=10_000)),
        updates_offset=draw(IDS),
        checkpoint_time_us=draw(TIMES),
    )


@given(resets() | updates())
def test_records_round_trip(record: BookResetRecord | BookUpdateRecord) -> None:
    assert decode_book_record(encode_book(record)) == record


@given(checkpoints())
def test_checkpoints_round_trip(checkpoint: BookCheckpoint) -> None:
    assert decode_book_checkpoint(encode_book(checkpoint)) == checkpoint


def test_amounts_are_written_as_plain_decimal_strings() -> None:
    record = _update(1, 1)
    record = msgspec.structs.replace(record, bids=((Decimal("1E-7"), Decimal("1E+2")),))
    assert b'"bids":[["0.0000001","100"]]' in encode_book(record)


def _reason(decode: Callable[[bytes], object], payload: bytes) -> str | None:
    try:
        decode(payload)
    except DecodeError as exc:
        return str(exc.reason)
    return None


@given(st.binary(max_size=300))
def test_hostile_bytes_only_raise_decode_error(payload: bytes) -> None:
    for decode in (decode_book_record, decode_book_checkpoint):
        assert _reason(decode, payload) in REASONS | {None}


JUNK = st.recursive(
    st.one_of(st.integers(), st.text(max_size=6), st.booleans(), st.none(), st.floats()),
    lambda inner: st.lists(inner, max_size=3),
    max_leaves=6,
)
FIELDS = [
    "symbol", "epoch", "reason", "update_id", "first_update_id", "final_update_id", "bids", "asks",
    "event_time_us", "receive_time_us", "updates_partition", "updates_offset", "checkpoint_time_us",
]  # fmt: skip


@given(
    st.sampled_from(["reset", "update", "checkpoint", "other"]),
    st.dictionaries(st.sampled_from(FIELDS), JUNK, max_size=13),
)
def test_wrong_shapes_are_rejected_cleanly(kind: str, fields: dict[str, object]) -> None:
    payload = msgspec.json.encode({"type": kind, "v": 1, **fields})
    for decode in (decode_book_record, decode_book_checkpoint):
        assert _reason(decode, payload) in REASONS | {None}
