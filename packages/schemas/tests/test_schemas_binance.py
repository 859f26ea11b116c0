"""Binance payload parsing, against documented samples and the real recordings."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cryptopipe.schemas import DecodeError, binance

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "binance"

AGG = (
    b'{"e":"aggTrade","E":1672515782136000,"s":"BNBBTC","a":12345,"p":"0.001","q":"100",'
    b'"f":100,"l":105,"T":1672515782136001,"m":true,"M":true}'
)
TRADE = (
    b'{"e":"trade","E":1723161255343,"s":"BTCUSDT","t":3735683259,"p":"61837.63000000",'
    b'"q":"0.02000000","T":1723161255342,"m":true,"M":true}'
)


def test_agg_trade_in_microseconds() -> None:
    event = binance.parse_event(AGG)
    assert isinstance(event, binance.AggTradeEvent)
    trade = binance.event_to_trade(event, receive_time_us=5, unit="MICROSECOND")
    assert (trade.trade_id, trade.first_trade_id, trade.last_trade_id) == (12345, 100, 105)
    assert trade.trade_time_us == 1672515782136001
    assert trade.kind == "aggTrade"
    assert trade.price == Decimal("0.001")


def test_trade_in_milliseconds_is_scaled() -> None:
    event = binance.parse_event(TRADE)
    assert isinstance(event, binance.TradeEvent)
    trade = binance.event_to_trade(event, receive_time_us=5, unit="MILLISECOND")
    assert trade.trade_time_us == 1723161255342000
    assert trade.event_time_us == 1723161255343000
    assert trade.kind == "trade"


def test_other_events_are_ignored_and_broken_trades_rejected() -> None:
    assert binance.parse_event(b'{"e":"depthUpdate","E":1,"b":[]}') is None
    with pytest.raises(DecodeError) as info:
        binance.parse_event(b'{"e":"trade","E":1,"s":"X"}')
    assert info.value.reason == "invalid_trade"
    with pytest.raises(DecodeError) as info:
        binance.parse_event(b'{"u":1,"s":"BTCUSDT","b":"1"}')
    assert info.value.reason == "unknown_event"
    with pytest.raises(DecodeError) as info:
        binance.split_frame(b'{"lastUpdateId":1,"bids":[]}')
    assert info.value.reason == "not_a_stream_frame"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b'{"e":"trade","E":1,"s":"X","t":1,"p":"NaN","q":"1","T":1,"m":true}', "invalid_value"),
        (b'{"e":"trade","E":1,"s":"X","t":1,"p":"-1","q":"1","T":1,"m":true}', "invalid_value"),
        (b'{"e":"trade","E":1,"s":"X","t":1,"p":"0","q":"1","T":1,"m":true}', "invalid_value"),
        (b'{"e":"trade","E":1,"s":"X","t":1,"p":"1","q":"Infinity","T":1,"m":true}', "invalid_value"),
        (b'{"e":"trade","E":1,"s":"X\xff","t":1,"p":"1","q":"1","T":1,"m":true}', "invalid_utf8"),
    ],
)
def test_impossible_amounts_and_bad_utf8_are_rejected(payload: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        binance.parse_event(payload)
    assert info.value.reason == reason


def test_bad_utf8_in_a_frame_is_a_decode_error() -> None:
    with pytest.raises(DecodeError) as info:
        binance.split_frame(b'{"stream":"a\xff","data":{}}')
    assert info.value.reason == "invalid_utf8"


def test_rest_agg_trades_are_marked_backfilled() -> None:
    items = binance.parse_rest_agg_trades(
        b'[{"a":26129,"p":"0.01633102","q":"4.70443515","f":27781,"l":27781,"T":1498793709153,"m":true,"M":true}]'
    )
    trade = binance.rest_agg_to_trade(items[0], symbol="BNBBTC", receive_time_us=1, unit="MILLISECOND")
    assert trade.backfilled
    assert trade.trade_time_us == 1498793709153000


@given(st.binary(max_size=400))
def test_hostile_frames_only_raise_decode_error(payload: bytes) -> None:
    try:
        frame = binance.split_frame(payload)
        binance.parse_event(frame.data)
    except DecodeError:
        pass


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(list("eEstpqTmMafl")),
        st.one_of(st.integers(), st.text(max_size=5), st.booleans(), st.none(), st.floats(allow_nan=False)),
        max_size=12,
    )
)
def test_wrong_types_are_rejected_cleanly(fields: dict[str, object]) -> None:
    error = _error_of(binance.parse_event, msgspec.json.encode(fields))
    assert error is None or error.reason in {
        "invalid_trade",
        "invalid_aggTrade",
        "unknown_event",
        "invalid_value",
        "price_not_string",
        "quantity_not_string",
    }


def _error_of(parse: Callable[[bytes], object], payload: bytes) -> DecodeError | None:
    """The DecodeError ``parse`` raises, or None; any other exception escapes and fails the test."""
    try:
        parse(payload)
    except DecodeError as exc:
        return exc
    return None


@pytest.mark.skipif(not DATA.is_dir(), reason=f"real Binance recordings not found at {DATA}")
def test_every_recorded_trade_frame_parses() -> None:
    path = DATA / "btcusdt_20240808.gz"
    parsed = skipped = 0
    last_id = None
    with gzip.open(path, "rb") as lines:
        for line in lines:
            _, _, raw = line.partition(b" ")
            try:
                frame = binance.split_frame(raw)
            except DecodeError:
                skipped += 1
                continue
            if not frame.stream.endswith("@trade"):
                continue
            event = binance.parse_event(frame.data)
            assert isinstance(event, binance.TradeEvent)
            if last_id is not None:
                assert event.t == last_id + 1
            last_id = event.t
            parsed += 1
    assert parsed == 9757
    assert skipped == 1


# --- structural extremes ------------------------------------------------------------------------

#: Every reason these parsers give (``DecodeError.reason``), as the module docstring lists them.
REASONS = {
    "malformed_json",
    "empty_frame",
    "unsupported_encoding",
    "invalid_utf8",
    "too_deeply_nested",
    "not_a_stream_frame",
    "unknown_event",
    "invalid_trade",
    "invalid_aggTrade",
    "price_not_string",
    "quantity_not_string",
    "invalid_value",
    "invalid_rest_aggtrades",
}
FRAME = b'{"stream":"bnbbtc@aggTrade","data":' + AGG + b"}"
REST = b'[{"a":26129,"p":"0.01633102","q":"4.70443515","f":27781,"l":27781,"T":1498793709153,"m":true}]'


@pytest.mark.parametrize(
    ("parse", "payload", "reason"),
    [
        (binance.parse_event, AGG.replace(b'"p":"0.001"', b'"p":0.001'), "price_not_string"),
        (binance.parse_event, AGG.replace(b'"p":"0.001"', b'"p":1'), "price_not_string"),
        (binance.parse_event, TRADE.replace(b'"q":"0.02000000"', b'"q":0.02'), "quantity_not_string"),
        (binance.parse_event, AGG + b"x", "malformed_json"),
        (
            binance.parse_event,
            b'{"e":"aggTrade","x":' + b"[" * 5000 + b"]" * 5000 + b"}",
            "too_deeply_nested",
        ),
        (binance.parse_event, b'{"e":"aggTrade","E":"x","e":"\xff"}', "invalid_utf8"),
        (
            binance.parse_rest_agg_trades,
            REST.replace(b'"p":"0.01633102"', b'"p":0.01633102'),
            "price_not_string",
        ),
        (binance.parse_rest_agg_trades, REST.replace(b'"q":"4.70443515"', b'"q":4'), "quantity_not_string"),
        (binance.parse_rest_agg_trades, b'[{"x":' + b"[" * 5000 + b"]" * 5000 + b"}]", "too_deeply_nested"),
        (binance.parse_rest_agg_trades, b'[{"a":1e400}]', "invalid_rest_aggtrades"),
        (binance.split_frame, b"", "empty_frame"),
        (binance.split_frame, b" \r\n\t", "empty_frame"),
        (binance.split_frame, b"\xef\xbb\xbf" + FRAME, "unsupported_encoding"),
        (binance.split_frame, FRAME.decode().encode("utf-16"), "unsupported_encoding"),
        (binance.split_frame, FRAME.decode().encode("utf-16-le"), "unsupported_encoding"),
        (binance.split_frame, FRAME.decode().encode("utf-32-be"), "unsupported_encoding"),
        (binance.split_frame, b"\x00\x01binary", "malformed_json"),
        (
            binance.split_frame,
            b'{"stream":"x","data":' + b"[" * 5000 + b"]" * 5000 + b"}",
            "too_deeply_nested",
        ),
        (binance.split_frame, b'{"id":1,"result":' + b"{}" * 10 + b"}", "malformed_json"),
    ],
)
def test_structural_extremes_have_precise_reasons(
    parse: Callable[[bytes], object], payload: bytes, reason: str
) -> None:
    error = _error_of(parse, payload)
    assert error is not None
    assert error.reason == reason, error


def test_a_json_number_price_is_never_converted() -> None:
    """Binance sends decimal strings; ``1.5`` is not ``"1.5"``, whatever msgspec would make of it."""
    assert binance.parse_event(AGG).p == Decimal("0.001")
    for token in (b"0.001", b"1", b"1e-3", b"-0"):
        error = _error_of(binance.parse_event, AGG.replace(b'"p":"0.001"', b'"p":' + token))
        assert error is not None
        assert error.reason == "price_not_string"
        assert token.decode() in error.detail


def test_huge_integers_give_short_details() -> None:
    error = _error_of(binance.parse_event, AGG.replace(b'"a":12345', b'"a":' + b"9" * 4300))
    assert error is not None
    assert error.reason == "invalid_value"
    assert len(error.detail) < 100


extreme_tokens = st.one_of(
    st.integers(min_value=1, max_value=6000).map(lambda n: "9" * n),
    st.integers(min_value=1, max_value=6000).map(lambda n: "-" + "1" * n),
    st.sampled_from(["1e400", "-1e400", "1e-400", "-0", "NaN", "Infinity", "null", "[]", "{}", '"1_000"']),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.text(max_size=10).map(json.dumps),
    st.integers(min_value=0, max_value=6000).map(lambda n: "[" * n + "]" * n),
    st.integers(min_value=0, max_value=3000).map(lambda n: '{"a":' * n + "1" + "}" * n),
)


@st.composite
def extreme_payloads(draw: st.DrawFn) -> bytes:
    """AGG, FRAME or REST with fields replaced by extreme tokens, duplicated, re-encoded or cut."""
    base = draw(st.sampled_from([AGG, TRADE, FRAME, REST]))
    fields = draw(st.lists(st.sampled_from(list("eEspqTmMaflt")), max_size=3))
    text = base.decode()
    for name in fields:
        token = draw(extreme_tokens)
        text = text.replace(f'"{name}":', f'"{name}":{token},"{name}_":', 1)  # token, old value renamed
        if draw(st.booleans()):
            text = text.replace("{", f'{{"{name}":{token},', 1)  # and a duplicate key before
    encoding = draw(st.sampled_from(["utf-8"] * 5 + ["utf-8-sig", "utf-16", "utf-32-be"]))
    payload = text.encode(encoding, "surrogatepass")
    if draw(st.booleans()):
        payload = payload[: draw(st.integers(0, len(payload)))]
    return payload


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(extreme_payloads())
def test_structural_extremes_only_raise_known_decode_errors(payload: bytes) -> None:
    """Size, nesting, numeric range, encodings: a result or a DecodeError with a known reason."""
    for parse in (binance.parse_event, binance.split_frame, binance.parse_rest_agg_trades):
        error = _error_of(parse, payload)
        assert error is None or error.reason in REASONS, error
    try:
        frame = binance.split_frame(payload)
    except DecodeError:
        return
    error = _error_of(binance.parse_event, frame.data)
    assert error is None or error.reason in REASONS, error
