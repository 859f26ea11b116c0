"""The frame parser: real recorded Binance frames, and hostile input that must never crash it."""

from __future__ import annotations

import gzip
import json
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cryptopipe.ingest.frames import ControlReply, FrameParser, Rejected, ServerShutdown, time_unit
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
    assert isinstance(outcome, Trade | Rejected | ServerShutdown | ControlReply)
    if isinstance(outcome, Rejected):
        assert outcome.reason
        assert outcome.reason.isascii()
        assert len(outcome.sample) <= 1024
        outcome.sample.decode("utf-8", "replace")
    if isinstance(outcome, Trade):
        # a trade that got through is sound: it encodes, its key is ASCII, its values make sense
        assert outcome.symbol == STREAMS.get("btcusdt@aggTrade") or outcome.symbol == "ETHUSDT"
        assert encode_key(outcome.symbol)
        assert outcome.price > 0
        assert outcome.quantity >= 0
        assert decode_trade(encode(outcome)) == outcome
