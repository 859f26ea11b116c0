"""The frame parser: real recorded Binance frames, and hostile input that must never crash it."""

from __future__ import annotations

import gzip
import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cryptopipe.ingest import frames as frames_module
from cryptopipe.ingest.frames import (
    INTERNAL_ERROR,
    REJECT_REASONS,
    ControlReply,
    FrameParser,
    Rejected,
    ServerShutdown,
    time_unit,
)
from cryptopipe.replay.testing import real_data_file
from cryptopipe.schemas import Trade, decode_trade, encode, encode_key

STREAMS = {"btcusdt@aggTrade": "BTCUSDT", "ethusdt@trade": "ETHUSDT"}
NOW_US = 1_723_161_255_343_000

AGG = {
    "e": "aggTrade",
    "E": 1_723_161_255_343_012,
    "s": "BTCUSDT",
    "a": 3_735_683_259,
    "p": "61837.63000000",
    "q": "0.02000000",
    "f": 100,
    "l": 105,
    "T": 1_723_161_255_342_871,
    "m": True,
    "M": True,
}


def frame(data: Any, stream: str = "btcusdt@aggTrade") -> bytes:
    return json.dumps({"stream": stream, "data": data}).encode()


def parse(payload: bytes | str, parser: FrameParser | None = None) -> Any:
    return (parser or FrameParser(STREAMS)).parse(payload, NOW_US)


def test_agg_trade_in_microseconds() -> None:
    trade = parse(frame(AGG))
    assert isinstance(trade, Trade)
    assert trade.symbol == "BTCUSDT"
    assert trade.trade_id == 3_735_683_259
    assert trade.price == Decimal("61837.63")
    assert trade.trade_time_us == AGG["T"]
    assert trade.receive_time_us == NOW_US
    assert (trade.first_trade_id, trade.last_trade_id, trade.kind, trade.backfilled) == (
        100,
        105,
        "aggTrade",
        False,
    )


def test_millisecond_timestamps_are_recognised() -> None:
    trade = parse(frame({**AGG, "E": 1_723_161_255_343, "T": 1_723_161_255_342}))
    assert isinstance(trade, Trade)
    assert trade.trade_time_us == 1_723_161_255_342_000
    assert time_unit(1_723_161_255_342) == "MILLISECOND"
    assert time_unit(1_723_161_255_342_871) == "MICROSECOND"


def test_real_recorded_frames() -> None:
    """Every @trade frame of a real recording parses, with consecutive ids; the rest are rejected."""
    parser = FrameParser({"btcusdt@trade": "BTCUSDT"})
    trades: list[Trade] = []
    rejected: dict[str, int] = {}
    with gzip.open(real_data_file("btcusdt_20240808.gz"), "rb") as lines:
        for line in lines:
            recv_ns, _, payload = line.rstrip(b"\n").partition(b" ")
            outcome = parser.parse(payload, int(recv_ns) // 1000)
            if isinstance(outcome, Trade):
                trades.append(outcome)
            else:
                assert isinstance(outcome, Rejected), outcome
                rejected[outcome.reason] = rejected.get(outcome.reason, 0) + 1
    assert len(trades) > 5000
    ids = [t.trade_id for t in trades]
    assert ids == list(range(ids[0], ids[0] + len(ids))), "recorded trade ids are consecutive"
    assert all(t.kind == "trade" and t.symbol == "BTCUSDT" and t.price > 0 for t in trades)
    # recorded in milliseconds, converted to microseconds; the recording clock ran ~1.27 s behind
    assert all(t.trade_time_us % 1000 == 0 for t in trades)
    skew_ms = sorted((t.receive_time_us - t.trade_time_us) / 1000 for t in trades)[len(trades) // 2]
    assert -1400 < skew_ms < -1100
    # depth/bookTicker are streams we did not subscribe to; the REST snapshot is not a frame
    assert set(rejected) == {"unknown_stream", "not_a_stream_frame"}
    assert rejected["not_a_stream_frame"] == 1
    for trade in trades[:100]:
        assert decode_trade(encode(trade)) == trade


def test_control_messages() -> None:
    assert parse(b'{"result":null,"id":3}') == ControlReply(3)
    reply = parse(b'{"code":2,"msg":"Invalid request: too many","id":4}')
    assert isinstance(reply, ControlReply)
    assert reply.error is not None
    assert reply.error.startswith("2:")
    assert isinstance(parse(b'{"e":"serverShutdown","E":1723161255343}'), ServerShutdown)
    assert isinstance(parse(frame({"e": "serverShutdown", "E": 1})), ServerShutdown)


def _reason(payload: bytes | str) -> str:
    outcome = parse(payload)
    assert isinstance(outcome, Rejected), outcome
    return str(outcome.reason)


def test_rejection_reasons() -> None:
    assert _reason(b"\x00\x01binary") == "malformed_json"
    binary = FrameParser(STREAMS).parse(frame(AGG), NOW_US, binary=True)
    assert isinstance(binary, Rejected)
    assert binary.reason == "binary_frame"
    assert _reason(b"not json") == "malformed_json"
    assert _reason(b"[1,2]") == "not_a_stream_frame"
    assert _reason(b'{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","s":"\xff\xfe"}}') == "invalid_utf8"
    assert _reason(frame({**AGG, "s": "ETHUSDT"})) == "symbol_mismatch"
    assert _reason(frame(AGG, stream="solusdt@aggTrade")) == "unknown_stream"
    assert _reason(frame({**AGG, "e": "trade"})) == "invalid_trade"
    assert _reason(frame({"e": "depthUpdate", "E": 1})) == "unexpected_event"
    assert _reason(frame({"x": 1})) == "unknown_event"
    assert _reason(frame({**AGG, "p": "NaN"})) == "invalid_value"
    assert _reason(frame({**AGG, "p": "-1"})) == "invalid_value"
    assert _reason(frame({**AGG, "q": "1e400"})) == "invalid_value"
    assert _reason(frame({**AGG, "a": -1})) == "invalid_value"
    assert _reason(frame({**AGG, "f": 9, "l": 2})) == "invalid_value"
    assert _reason(frame({**AGG, "a": 2**70})) == "invalid_value"
    assert _reason(frame({**AGG, "p": ["1"]})) == "invalid_aggTrade"
    assert _reason(frame({**AGG, "m": "yes"})) == "invalid_aggTrade"
    missing = dict(AGG)
    del missing["T"]
    assert _reason(frame(missing)) == "invalid_aggTrade"
    huge = frame({**AGG, "pad": "x" * 100_000})
    outcome = parse(huge)
    assert isinstance(outcome, Rejected)
    assert outcome.reason == "frame_too_large"
    assert len(outcome.sample) <= 1024


# --- hypothesis: hostile input ------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=12,
)
field_values = (
    json_values
    | st.sampled_from(["NaN", "Infinity", "-0", "1e999", "0", "", "61837.63", "BTCUSDT", "btcusdt"])
    | st.integers(min_value=-(2**70), max_value=2**70)
)


@st.composite
def mutated_agg_trade(draw: st.DrawFn) -> bytes:
    data: dict[str, Any] = dict(AGG)
    for key in draw(st.lists(st.sampled_from(sorted(AGG)), max_size=4, unique=True)):
        if draw(st.booleans()):
            del data[key]
        else:
            data[key] = draw(field_values)
    data.update(draw(st.dictionaries(st.text(max_size=3), field_values, max_size=2)))
    stream = draw(st.sampled_from([*STREAMS, "x@y", ""]))
    wrapper: Any = {"stream": stream, "data": data}
    if draw(st.booleans()):
        wrapper = draw(st.sampled_from([data, [wrapper], {"stream": stream}, {"data": data}]))
    text = json.dumps(wrapper)
    if draw(st.booleans()):
        cut = draw(st.integers(min_value=0, max_value=len(text)))
        text = text[:cut]
    return text.encode("utf-8", "surrogatepass")


hostile = (
    st.binary(max_size=300)
    | st.text(max_size=300)
    | json_values.map(lambda v: json.dumps(v).encode())
    | mutated_agg_trade()
    | st.binary(max_size=40).map(
        lambda b: b'{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","s":"' + b + b'"}}'
    )
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile)
def test_hostile_frames_never_crash(payload: bytes | str) -> None:
    outcome = parse(payload)
    check_outcome(outcome)


def check_outcome(outcome: object) -> None:
    """The property: a trade, a control message, or a rejection with a known reason; never a crash."""
    assert isinstance(outcome, Trade | Rejected | ServerShutdown | ControlReply)
    if isinstance(outcome, Rejected):
        assert outcome.reason in REJECT_REASONS, outcome
        assert isinstance(outcome.sample, bytes)
        assert len(outcome.sample) <= 1024
        assert isinstance(outcome.detail, str)
        outcome.sample.decode("utf-8", "replace")
    if isinstance(outcome, Trade):
        # a trade that got through is sound: it encodes, its key is ASCII, its values make sense
        assert outcome.symbol == STREAMS.get("btcusdt@aggTrade") or outcome.symbol == "ETHUSDT"
        assert encode_key(outcome.symbol)
        assert outcome.price > 0
        assert outcome.quantity >= 0
        assert decode_trade(encode(outcome)) == outcome


# --- structural extremes: the cases that used to raise, and the decisions taken ------------------


def raw_frame(tokens: dict[str, str] | list[tuple[str, str]], stream: str = "btcusdt@aggTrade") -> str:
    """A frame whose ``data`` is built from raw JSON tokens (so 1e400, 4300-digit ints, ... fit)."""
    pairs = tokens.items() if isinstance(tokens, dict) else tokens
    data = "{" + ",".join(f"{json.dumps(key)}:{token}" for key, token in pairs) + "}"
    return '{"stream":' + json.dumps(stream) + ',"data":' + data + "}"


AGG_TOKENS = {key: json.dumps(value) for key, value in AGG.items()}


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        # deep nesting raised RecursionError from msgspec (it was the one internal_error)
        ('{"stream":"btcusdt@aggTrade","data":' + "[" * 5000 + "]" * 5000 + "}", "too_deeply_nested"),
        (raw_frame({**AGG_TOKENS, "x": '{"a":' * 3000 + "1" + "}" * 3000}), "too_deeply_nested"),
        ('{"id":1,"result":' + "[" * 3000 + "]" * 3000 + "}", "too_deeply_nested"),
        ('{"id":1,"error":{"code":1,"msg":' + "[" * 3000 + "]" * 3000 + "}}", "too_deeply_nested"),
        ('{"event":' + "[" * 30000 + "]" * 30000 + "}", "too_deeply_nested"),
        # prices and quantities as JSON numbers: rejected, never converted
        (raw_frame({**AGG_TOKENS, "p": "61837.63"}), "price_not_string"),
        (raw_frame({**AGG_TOKENS, "p": "61837"}), "price_not_string"),
        (raw_frame({**AGG_TOKENS, "p": "1e400"}), "price_not_string"),
        (raw_frame({**AGG_TOKENS, "q": "0.02"}), "quantity_not_string"),
        (raw_frame([*AGG_TOKENS.items(), ("p", "1.5")]), "price_not_string"),  # duplicate key, last wins
        # empty frames and other encodings than UTF-8 were all "malformed_json"
        ("", "empty_frame"),
        (" \t\r\n ", "empty_frame"),
        (frame(AGG).decode().encode("utf-8-sig"), "unsupported_encoding"),
        (frame(AGG).decode().encode("utf-16"), "unsupported_encoding"),
        (frame(AGG).decode().encode("utf-16-le"), "unsupported_encoding"),
        (frame(AGG).decode().encode("utf-16-be"), "unsupported_encoding"),
        (frame(AGG).decode().encode("utf-32"), "unsupported_encoding"),
        (frame(AGG).decode().encode("utf-32-be"), "unsupported_encoding"),
        # unchanged, now pinned: extremes that were already dead-lettered precisely
        (raw_frame({**AGG_TOKENS, "a": "9" * 4301}), "invalid_aggTrade"),
        (raw_frame({**AGG_TOKENS, "E": "9" * 4300}), "invalid_value"),
        (raw_frame({**AGG_TOKENS, "T": "-" + "9" * 30}), "invalid_value"),
        (raw_frame({**AGG_TOKENS, "a": "1e400"}), "invalid_aggTrade"),
        (raw_frame({**AGG_TOKENS, "p": '"1e400"'}), "invalid_value"),
        (raw_frame({**AGG_TOKENS, "p": "NaN"}), "malformed_json"),
        (raw_frame({**AGG_TOKENS, "s": '"\\ud800"'}), "malformed_json"),
        (raw_frame({**AGG_TOKENS, "s": "1"}), "invalid_aggTrade"),
        (raw_frame({**AGG_TOKENS, "m": "null"}), "invalid_aggTrade"),
        ('{"stream":"btcusdt@aggTrade","data":null}', "unknown_event"),
        ('{"stream":"btcusdt@aggTrade","data":[]}', "unknown_event"),
        ('{"stream":null,"data":{}}', "not_a_stream_frame"),
        (b'{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","s":"\xc0\xaf"}}', "invalid_utf8"),
        (b'{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","s":"\xed\xa0\x80"}}', "invalid_utf8"),
        (b'{"stream":"btcusdt@aggTrade\x00","data":{}}', "malformed_json"),
        ("null", "not_a_stream_frame"),
    ],
)
def test_structural_extremes_get_precise_reasons(payload: bytes | str, reason: str) -> None:
    outcome = FrameParser(STREAMS, max_frame_bytes=1 << 20).parse(payload, NOW_US)
    assert isinstance(outcome, Rejected), outcome
    assert (outcome.reason, len(outcome.sample) <= 1024) == (reason, True), outcome.detail


def test_details_stay_short_for_huge_numbers() -> None:
    outcome = parse(raw_frame({**AGG_TOKENS, "E": "9" * 4300}))
    assert isinstance(outcome, Rejected)
    assert outcome.reason == "invalid_value"
    assert len(outcome.detail) < 100
    reply = parse('{"id":1,"error":{"code":' + "9" * 4300 + ',"msg":"x"}}')
    assert isinstance(reply, ControlReply)
    assert reply.error is not None
    assert len(reply.error) < 100


def test_a_string_price_is_still_a_trade_and_bytes_like_payloads_parse() -> None:
    for payload in (frame(AGG), frame(AGG).decode(), bytearray(frame(AGG)), memoryview(frame(AGG))):
        trade = parse(payload)  # type: ignore[arg-type]
        assert isinstance(trade, Trade)
        assert trade.price == Decimal("61837.63")
    # the lone surrogate of a str frame is replaced, not a crash
    outcome = parse(raw_frame({**AGG_TOKENS, "s": '"BTC\ud800"'}))
    assert isinstance(outcome, Rejected)
    assert outcome.reason == "symbol_mismatch"


def test_a_parser_bug_is_an_internal_error_rejection_not_an_exception(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("bug")

    monkeypatch.setattr(frames_module.bn, "event_to_trade", broken)
    outcome = parse(frame(AGG))
    assert isinstance(outcome, Rejected)
    assert outcome.reason == INTERNAL_ERROR
    assert INTERNAL_ERROR not in REJECT_REASONS
    assert outcome.detail.startswith("ZeroDivisionError: bug at test_ingest_frames.py:")
    assert outcome.sample == frame(AGG)[:1024]
    odd = FrameParser(STREAMS).parse(12345, NOW_US)
    assert isinstance(odd, Rejected)
    assert odd.reason == INTERNAL_ERROR


# --- hypothesis: structural extremes ------------------------------------------------------------

#: Nesting depths around msgspec's recursion limit (about 1000 minus the caller's stack depth).
depths = st.integers(min_value=0, max_value=1200) | st.sampled_from([990, 1000, 5_000, 30_000])


@st.composite
def nested(draw: st.DrawFn) -> str:
    depth = draw(depths)
    if draw(st.booleans()):
        return "[" * depth + draw(st.sampled_from(["", "1", "null", '"x"'])) + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


number_tokens = st.one_of(
    st.builds(
        lambda sign, digit, n: sign + digit * n,
        st.sampled_from(["", "-"]),
        st.sampled_from(["9", "1", "5"]),
        st.sampled_from([1, 18, 19, 20, 100, 4300, 4301, 5000]) | st.integers(1, 6000),
    ),
    st.sampled_from(["1e400", "-1e400", "1e-400", "1E+308", "4.9e-324", "-0", "-0.0", "0", "1e999999999999"]),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "+1", "01", "1.", ".5", "0x10"]),  # not JSON
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
)
string_tokens = st.one_of(
    st.text(max_size=20).map(json.dumps),  # ensure_ascii: lone surrogates become "\ud800" escapes
    st.sampled_from(['"NaN"', '"sNaN"', '"-0"', '"1e400"', '"1_000"', '" 1 "', '""', '"0E-1000000000"']),
    st.builds(lambda n: '"' + "9" * n + '"', st.integers(1, 6000)),
)
structure_tokens = st.sampled_from(["null", "true", "[]", "{}", '["1"]', '{"e":"aggTrade"}']) | nested()
extreme_tokens = number_tokens | string_tokens | structure_tokens


OTHER_ENCODINGS = ["utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"]
#: NUL, overlong "/", an encoded surrogate, a stray byte, a lone surrogate escape, a BOM.
JUNK = [b"\x00", b"\xc0\xaf", b"\xed\xa0\x80", b"\xff", b"\\ud800", b"\xef\xbb\xbf"]


@st.composite
def extreme_agg_trade(draw: st.DrawFn) -> bytes | str:
    """An aggTrade frame with extreme tokens, duplicate keys, odd wrappers, sizes and encodings."""
    pairs = list(AGG_TOKENS.items())
    for key in draw(st.lists(st.sampled_from(sorted(AGG)), max_size=4, unique=True)):
        pairs = [(k, draw(extreme_tokens) if k == key else v) for k, v in pairs]
    for _ in range(draw(st.integers(0, 2))):  # duplicate keys: msgspec keeps the last one
        pairs.append((draw(st.sampled_from([*sorted(AGG), "x"])), draw(extreme_tokens)))
    if draw(st.integers(0, 3)) == 0:  # sizes around the default limit, and far beyond it
        size = draw(st.sampled_from([65_000, 65_536, 70_000, 140_000]) | st.integers(0, 140_000))
        pairs.append(("pad", '"' + "x" * size + '"'))
    stream = draw(st.sampled_from([*STREAMS, "btcusdt@aggTrade", "x@y", ""]))
    text = raw_frame(pairs, stream)
    wrapper = draw(st.integers(0, 7))
    if wrapper == 1:
        text = text[len('{"stream":') + len(json.dumps(stream)) + len(',"data":') : -1]  # data alone
    elif wrapper == 2:
        text = '{"id":1,"result":' + draw(extreme_tokens) + "}"
    elif wrapper == 3:
        text = '{"stream":' + json.dumps(stream) + ',"data":' + draw(extreme_tokens) + "}"
    elif wrapper == 4:
        text = draw(st.sampled_from(["", " ", "\n\t", "[" + text + "]", text + text, text[: len(text) // 2]]))
    if draw(st.integers(0, 3)) == 0:
        payload = text.encode(draw(st.sampled_from(OTHER_ENCODINGS)), "surrogatepass")
    elif draw(st.booleans()):
        return text  # a str frame, maybe with lone surrogates
    else:
        payload = text.encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 3)) == 0:
        at = draw(st.integers(0, len(payload)))
        payload = payload[:at] + draw(st.sampled_from(JUNK)) + payload[at:]
    return payload


SMALL_LIMIT = FrameParser(STREAMS)
LARGE_LIMIT = FrameParser(STREAMS, max_frame_bytes=1 << 20)


@settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
@given(extreme_agg_trade(), st.booleans())
def test_structural_extremes_never_crash(payload: bytes | str, large: bool) -> None:
    """Size, nesting, numeric range, encodings: a trade or a known reason, never an exception."""
    check_outcome((LARGE_LIMIT if large else SMALL_LIMIT).parse(payload, NOW_US))


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(["[", '{"a":', '{"stream":"btcusdt@aggTrade","data":', '{"id":1,"result":']), depths)
def test_deep_nesting_never_crashes(opener: str, depth: int) -> None:
    for payload in (opener * depth, opener * depth + "1" + "]" * depth):
        check_outcome(LARGE_LIMIT.parse(payload, NOW_US))


json_numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["1e400", "-1e400", "1e-400", "61837.63", "0.02", "-0", "1E+2"]),
)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(["p", "q"]), json_numbers)
def test_a_json_number_never_becomes_a_price(field: str, token: str) -> None:
    """Binance sends prices and quantities as strings; a number is dead-lettered, not converted."""
    for data in ({**AGG_TOKENS, field: token}, [*AGG_TOKENS.items(), (field, token)]):
        outcome = parse(raw_frame(data))
        assert isinstance(outcome, Rejected)
        assert outcome.reason == {"p": "price_not_string", "q": "quantity_not_string"}[field]
