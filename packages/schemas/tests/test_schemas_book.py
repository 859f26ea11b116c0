"""Order-book payloads: documented samples, round trips through Binance's JSON, and junk rejected cleanly."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cryptopipe.schemas import DecodeError, book

DEPTH = (
    b'{"e":"depthUpdate","E":1672515782136,"s":"BNBBTC","U":157,"u":160,'
    b'"b":[["0.0024","10"]],"a":[["0.0026","100"],["0.0027","0.00000000"]]}'
)
TICKER = (
    b'{"u":400900217,"s":"BNBUSDT","b":"25.35190000","B":"31.21000000","a":"25.36520000","A":"40.66000000"}'
)
SNAPSHOT = (
    b'{"lastUpdateId":1027024,"bids":[["4.00000000","431.00000000"]],"asks":[["4.00000200","12.00000000"]]}'
)

#: Every reason the book decoders give, as the module docstring lists them.
STRUCTURAL = {"malformed_json", "empty_frame", "unsupported_encoding", "invalid_utf8", "too_deeply_nested"}
SHAPES = {"invalid_depthUpdate", "invalid_bookTicker", "invalid_rest_depth"}
REASONS = STRUCTURAL | SHAPES | {"price_not_string", "quantity_not_string", "invalid_value"}
DEEP = b"[" * 5000 + b"]" * 5000


def _snapshot_of(payload: bytes) -> book.DepthSnapshot:
    return book.decode_depth_snapshot(payload, symbol="BNBBTC")


def test_documented_samples_decode_into_decimals_and_microseconds() -> None:
    diff = book.decode_depth_update(DEPTH)
    assert (diff.symbol, diff.first_update_id, diff.final_update_id) == ("BNBBTC", 157, 160)
    assert diff.event_time_us == 1672515782136000
    assert diff.bids == ((Decimal("0.0024"), Decimal(10)),)
    assert diff.asks[1] == (Decimal("0.0027"), Decimal(0))
    assert book.decode_depth_update(DEPTH, unit="MICROSECOND").event_time_us == 1672515782136

    ticker = book.decode_book_ticker(TICKER)
    assert (ticker.update_id, ticker.bid_price, ticker.ask_quantity) == (
        400900217,
        Decimal("25.3519"),
        Decimal("40.66"),
    )

    snapshot = _snapshot_of(SNAPSHOT)
    assert snapshot.last_update_id == 1027024
    assert snapshot.bids == ((Decimal(4), Decimal(431)),)


def test_stream_names() -> None:
    assert book.depth_stream("BTCUSDT") == "btcusdt@depth@100ms"
    assert book.depth_stream("BTCUSDT", 1000) == "btcusdt@depth"
    assert book.book_ticker_stream("BTCUSDT") == "btcusdt@bookTicker"


@pytest.mark.parametrize(
    ("parse", "payload", "reason"),
    [
        (book.decode_depth_update, DEPTH.replace(b'"0.0024"', b"0.0024"), "price_not_string"),
        (book.decode_depth_update, DEPTH.replace(b'"100"', b"100"), "quantity_not_string"),
        (book.decode_depth_update, DEPTH.replace(b'"U":157', b'"U":161'), "invalid_value"),
        (book.decode_depth_update, DEPTH.replace(b'"U":157', b'"U":0'), "invalid_value"),
        (book.decode_depth_update, DEPTH.replace(b'"0.0024"', b'"0"'), "invalid_value"),
        (book.decode_depth_update, DEPTH.replace(b'"10"', b'"-1"'), "invalid_value"),
        (book.decode_depth_update, DEPTH.replace(b'"10"', b'"NaN"'), "invalid_value"),
        (book.decode_depth_update, DEPTH.replace(b'"10"', b'"1e40"'), "invalid_value"),
        (book.decode_depth_update, DEPTH.replace(b'"10"', b'"ten"'), "invalid_value"),
        (book.decode_depth_update, DEPTH.replace(b'"depthUpdate"', b'"trade"'), "invalid_depthUpdate"),
        (book.decode_depth_update, DEPTH.replace(b'"b":', b'"x":'), "invalid_depthUpdate"),
        (book.decode_depth_update, DEPTH.replace(b'["0.0024","10"]', b'["0.0024"]'), "invalid_depthUpdate"),
        (book.decode_depth_update, DEPTH[:-1], "malformed_json"),
        (book.decode_depth_update, b"", "empty_frame"),
        (book.decode_depth_update, b'{"e":"depthUpdate","x":' + DEEP + b"}", "too_deeply_nested"),
        (book.decode_book_ticker, TICKER.replace(b'"25.35190000"', b"25.3519"), "price_not_string"),
        (book.decode_book_ticker, TICKER.replace(b'"40.66000000"', b"40.66"), "quantity_not_string"),
        (book.decode_book_ticker, TICKER.replace(b'"u":400900217', b'"u":-1'), "invalid_value"),
        (book.decode_book_ticker, TICKER.replace(b'"s":"BNBUSDT",', b""), "invalid_bookTicker"),
        (book.decode_book_ticker, TICKER.replace(b"BNBUSDT", b"BNB\xffUSDT"), "invalid_utf8"),
        (_snapshot_of, SNAPSHOT.replace(b'"4.00000000"', b"4"), "price_not_string"),
        (_snapshot_of, SNAPSHOT.replace(b'"12.00000000"', b"12.0"), "quantity_not_string"),
        (_snapshot_of, SNAPSHOT.replace(b"1027024", b"-5"), "invalid_value"),
        (_snapshot_of, SNAPSHOT.replace(b"1027024", b"1" * 30), "invalid_value"),
        (_snapshot_of, SNAPSHOT.replace(b"1027024", b"1.5"), "invalid_rest_depth"),
        (_snapshot_of, b"[]", "invalid_rest_depth"),
    ],
)
def test_bad_payloads_give_their_reason(
    parse: Callable[[bytes], object], payload: bytes, reason: str
) -> None:
    with pytest.raises(DecodeError) as info:
        parse(payload)
    assert info.value.reason == reason
    assert reason in REASONS


PRICES = st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal("1e12"), places=8)
QUANTITIES = st.decimals(min_value=Decimal(0), max_value=Decimal("1e12"), places=8)
IDS = st.integers(min_value=1, max_value=2**63 - 1)
SYMBOLS = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=12)
LEVELS = st.lists(st.tuples(PRICES, QUANTITIES), max_size=8).map(tuple)


@st.composite
def depth_diffs(draw: st.DrawFn) -> book.DepthDiff:
    first = draw(IDS)
    return book.DepthDiff(
        symbol=draw(SYMBOLS),
        first_update_id=first,
        final_update_id=draw(st.integers(min_value=first, max_value=2**63 - 1)),
        event_time_us=draw(st.integers(min_value=1, max_value=(2**63 - 1) // 1000)) * 1000,
        bids=draw(LEVELS),
        asks=draw(LEVELS),
    )


@given(depth_diffs())
def test_depth_update_round_trips(diff: book.DepthDiff) -> None:
    assert book.decode_depth_update(book.depth_update_payload(diff)) == diff
    micro = book.depth_update_payload(diff, unit="MICROSECOND")
    assert book.decode_depth_update(micro, unit="MICROSECOND") == diff


@given(
    st.builds(
        book.BookTicker,
        symbol=SYMBOLS,
        update_id=IDS,
        bid_price=PRICES,
        bid_quantity=QUANTITIES,
        ask_price=PRICES,
        ask_quantity=QUANTITIES,
    )
)
def test_book_ticker_round_trips(ticker: book.BookTicker) -> None:
    assert book.decode_book_ticker(book.book_ticker_payload(ticker)) == ticker


@given(st.builds(book.DepthSnapshot, symbol=SYMBOLS, last_update_id=IDS, bids=LEVELS, asks=LEVELS))
def test_depth_snapshot_round_trips(snapshot: book.DepthSnapshot) -> None:
    payload = book.depth_snapshot_payload(snapshot)
    assert book.decode_depth_snapshot(payload, symbol=snapshot.symbol) == snapshot


def test_payloads_write_plain_digits_as_binance_does() -> None:
    diff = book.DepthDiff(
        symbol="X",
        first_update_id=1,
        final_update_id=1,
        event_time_us=5000,
        bids=((Decimal("1E+2"), Decimal("0E-8")),),
        asks=(),
    )
    assert b'"b":[["100","0.00000000"]]' in book.depth_update_payload(diff)


def _reason(parse: Callable[[bytes], object], payload: bytes) -> str | None:
    """The DecodeError reason ``parse`` raises, or None; any other exception fails the test."""
    try:
        parse(payload)
    except DecodeError as exc:
        return str(exc.reason)
    return None


DECODERS: list[Callable[[bytes], object]] = [book.decode_depth_update, book.decode_book_ticker, _snapshot_of]


@given(st.binary(max_size=300))
def test_hostile_bytes_only_raise_decode_error(payload: bytes) -> None:
    for parse in DECODERS:
        assert _reason(parse, payload) in REASONS | {None}


JUNK_VALUES = st.recursive(
    st.one_of(st.integers(), st.text(max_size=6), st.booleans(), st.none(), st.floats()),
    lambda inner: st.lists(inner, max_size=3),
    max_leaves=6,
)


@given(
    st.dictionaries(
        st.sampled_from(["e", "E", "s", "U", "u", "b", "B", "a", "A", "lastUpdateId", "bids", "asks"]),
        JUNK_VALUES,
        max_size=12,
    )
)
def test_wrong_shapes_are_rejected_cleanly(fields: dict[str, object]) -> None:
    payload = msgspec.json.encode(fields)
    for parse in DECODERS:
        assert _reason(parse, payload) in REASONS | {None}


@given(
    st.lists(
        st.tuples(st.text(max_size=8), st.text(max_size=8)),
        min_size=1,
        max_size=4,
    )
)
def test_junk_amount_strings_are_invalid_values_or_decimals(levels: list[tuple[str, str]]) -> None:
    payload = msgspec.json.encode({"lastUpdateId": 1, "bids": levels, "asks": []})
    reason = _reason(_snapshot_of, payload)
    assert reason in {"invalid_value", None}
    if reason is None:
        for price, quantity in _snapshot_of(payload).bids:
            assert price > 0
            assert quantity >= 0
            assert quantity.is_finite()
