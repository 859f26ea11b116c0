"""Wire-format round trips and rejection of malformed input."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cryptopipe.schemas import (
    Alert,
    DeadLetter,
    DecodeError,
    Trade,
    decode_alert,
    decode_dead_letter,
    decode_trade,
    encode,
    encode_key,
)

symbols = st.from_regex(r"[A-Z0-9]{2,12}", fullmatch=True)
prices = st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal("10000000"), places=8)
times_us = st.integers(min_value=0, max_value=2**53)

trades = st.builds(
    Trade,
    symbol=symbols,
    trade_id=st.integers(min_value=0, max_value=2**62),
    price=prices,
    quantity=prices,
    buyer_is_maker=st.booleans(),
    trade_time_us=times_us,
    event_time_us=times_us,
    receive_time_us=times_us,
    kind=st.sampled_from(["trade", "aggTrade"]),
    first_trade_id=st.none() | st.integers(min_value=0, max_value=2**62),
    last_trade_id=st.none() | st.integers(min_value=0, max_value=2**62),
    backfilled=st.booleans(),
)

alerts = st.builds(
    Alert,
    rule=st.text(min_size=1, max_size=20),
    symbol=symbols,
    kind=st.sampled_from(["final", "early"]),
    side=st.sampled_from(["BUY", "SELL"]),
    window_start_us=times_us,
    window_end_us=times_us,
    open=prices,
    close=prices,
    pct_change=st.floats(allow_nan=False, allow_infinity=False),
    raised_time_us=times_us,
    trigger_receive_time_us=st.none() | times_us,
)


@given(trades)
def test_trade_round_trip(trade: Trade) -> None:
    assert decode_trade(encode(trade)) == trade


@given(alerts)
def test_alert_round_trip(alert: Alert) -> None:
    assert decode_alert(encode(alert)) == alert


def test_dead_letter_round_trip() -> None:
    letter = DeadLetter(source="ingest", reason="malformed_json", detail="x", payload="{", receive_time_us=1)
    assert decode_dead_letter(encode(letter)) == letter


def test_price_is_exact_decimal_string_on_the_wire() -> None:
    trade = Trade(
        symbol="BTCUSDT",
        trade_id=1,
        price=Decimal("61837.63000000"),
        quantity=Decimal("0.02000000"),
        buyer_is_maker=True,
        trade_time_us=1,
        event_time_us=1,
        receive_time_us=1,
    )
    wire = msgspec.json.decode(encode(trade))
    assert wire["v"] == 1
    assert wire["price"] == "61837.63000000"
    assert decode_trade(encode(trade)).price == Decimal("61837.63000000")


def test_key_is_symbol() -> None:
    assert encode_key("BTCUSDT") == b"BTCUSDT"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "malformed_json"),
        (b"{", "malformed_json"),
        (b"\xff\xfe", "malformed_json"),
        (b"[]", "invalid_trade"),
        (b'{"v":2,"symbol":"X"}', "unknown_version"),
        (b'{"symbol":"X"}', "invalid_trade"),
        (b'{"v":1,"symbol":"X","trade_id":"1"}', "invalid_trade"),
        (
            b'{"v":1,"symbol":"BTCUSDT","trade_id":1,"price":"abc","quantity":"1","buyer_is_maker":true,'
            b'"trade_time_us":1,"event_time_us":1,"receive_time_us":1}',
            "invalid_trade",
        ),
    ],
)
def test_malformed_trade_is_rejected_with_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_trade(payload)
    assert info.value.reason == reason
    assert info.value.sample == payload[:200]


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_escape_as_another_exception(payload: bytes) -> None:
    error: DecodeError | None = None
    try:
        decode_trade(payload)
    except DecodeError as exc:  # any other exception escapes and fails the test
        error = exc
    if error is not None:
        assert error.reason
        assert len(error.sample) <= 200
