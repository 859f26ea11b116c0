"""Order-book streams: frames parsed into diffs and tickers, the settings, and the streams' plan."""

from __future__ import annotations

import gzip
import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from cryptopipe.ingest import IngestSettings
from cryptopipe.ingest.cli import build_parser, settings_from_args
from cryptopipe.ingest.frames import REJECT_REASONS, FrameParser, Rejected
from cryptopipe.ingest.market import market_share, parse_trading_symbols, plan_streams, symbol_streams
from cryptopipe.ingest.settings import load_settings
from cryptopipe.replay.testing import count_stream_lines, real_data_file
from cryptopipe.schemas import BookTicker, ConfigError, DepthDiff, settings_of
from cryptopipe.schemas import binance as bn

STREAMS = {"btcusdt@depth@100ms": "BTCUSDT", "btcusdt@bookTicker": "BTCUSDT", "ethusdt@depth": "ETHUSDT"}
NOW_US = 1_723_161_255_343_000
DEPTH = {"e": "depthUpdate", "E": 1_723_161_255_308, "s": "BTCUSDT", "U": 157, "u": 160}


def frame(data: Any, stream: str) -> bytes:
    return json.dumps({"stream": stream, "data": data}).encode()


def parse(payload: bytes) -> Any:
    return FrameParser(STREAMS).parse(payload, NOW_US)


def test_depth_update_in_milliseconds_or_microseconds_becomes_a_diff_in_microseconds() -> None:
    body = {**DEPTH, "b": [["61837.63", "0.5"]], "a": [["61837.64", "0"]]}
    diff = parse(frame(body, "btcusdt@depth@100ms"))
    assert isinstance(diff, DepthDiff)
    assert (diff.symbol, diff.first_update_id, diff.final_update_id) == ("BTCUSDT", 157, 160)
    assert diff.event_time_us == 1_723_161_255_308_000
    assert diff.bids == ((Decimal("61837.63"), Decimal("0.5")),)
    assert diff.asks == ((Decimal("61837.64"), Decimal("0")),)
    micro = parse(frame({**body, "E": 1_723_161_255_308_123}, "btcusdt@depth@100ms"))
    assert micro.event_time_us == 1_723_161_255_308_123
    slow = parse(frame({**body, "s": "ETHUSDT"}, "ethusdt@depth"))
    assert isinstance(slow, DepthDiff), "the 1,000 ms stream is parsed the same way"


def test_book_ticker_becomes_a_ticker() -> None:
    body = {"u": 400900217, "s": "BTCUSDT", "b": "25.35", "B": "31.21", "a": "25.36", "A": "40.66"}
    ticker = parse(frame(body, "btcusdt@bookTicker"))
    assert isinstance(ticker, BookTicker)
    assert (ticker.update_id, ticker.bid_price, ticker.ask_quantity) == (
        400900217,
        Decimal("25.35"),
        Decimal("40.66"),
    )


@pytest.mark.parametrize(
    ("data", "stream", "reason"),
    [
        ({**DEPTH, "s": "ETHUSDT", "b": [], "a": []}, "btcusdt@depth@100ms", "symbol_mismatch"),
        ({**DEPTH, "b": [[61837.63, "1"]], "a": []}, "btcusdt@depth@100ms", "price_not_string"),
        ({**DEPTH, "U": 161, "b": [], "a": []}, "btcusdt@depth@100ms", "invalid_value"),
        ({**DEPTH, "b": []}, "btcusdt@depth@100ms", "invalid_depthUpdate"),
        ({"e": "trade", "s": "BTCUSDT"}, "btcusdt@depth@100ms", "unexpected_event"),
        ({"u": 1, "s": "BTCUSDT", "b": "1", "B": "1", "a": "2"}, "btcusdt@bookTicker", "invalid_bookTicker"),
    ],
)
def test_bad_book_frames_are_rejected_with_a_known_reason(data: Any, stream: str, reason: str) -> None:
    outcome = parse(frame(data, stream))
    assert isinstance(outcome, Rejected)
    assert outcome.reason == reason
    assert reason in REJECT_REASONS


@given(st.dictionaries(st.sampled_from(["e", "E", "s", "U", "u", "b", "a", "B", "A"]), st.from_type(object)))
def test_no_book_payload_makes_the_parser_raise(data: dict[str, Any]) -> None:
    for stream in ("btcusdt@depth@100ms", "btcusdt@bookTicker"):
        try:
            payload = json.dumps({"stream": stream, "data": data}, default=str).encode()
        except (TypeError, ValueError):
            return
        outcome = FrameParser(STREAMS).parse(payload, NOW_US)
        assert not isinstance(outcome, Rejected) or outcome.reason in REJECT_REASONS


def test_every_recorded_book_frame_parses() -> None:
    """The real recording's depth@100ms and bookTicker frames all parse; only the trades are not ours."""
    parser = FrameParser({"btcusdt@depth@100ms": "BTCUSDT", "btcusdt@bookTicker": "BTCUSDT"})
    kinds: dict[str, int] = {}
    path = real_data_file("btcusdt_20240808.gz")
    with gzip.open(path, "rb") as lines:
        for line in lines:
            payload = line.split(b" ", 1)[1].strip()
            if payload.startswith(b'{"lastUpdateId"'):
                continue
            outcome = parser.parse(payload, NOW_US)
            name = outcome.reason if isinstance(outcome, Rejected) else type(outcome).__name__
            kinds[name] = kinds.get(name, 0) + 1
    assert set(kinds) == {"DepthDiff", "BookTicker", "unknown_stream"}, kinds
    assert kinds["DepthDiff"] == count_stream_lines(path, "@depth@100ms") > 3000
    assert kinds["BookTicker"] == count_stream_lines(path, "@bookTicker") > 20000


# --- settings ------------------------------------------------------------------------------------


def test_books_are_off_by_default_and_trade_streams_unchanged() -> None:
    settings = settings_of(IngestSettings)
    assert (settings.depth, settings.books, settings.book_ticker) == ("off", False, True)
    assert symbol_streams("btcusdt", settings) == [bn.stream_name("btcusdt", settings.mode)]


@pytest.mark.parametrize(
    ("depth", "ticker", "expected"),
    [
        ("100ms", True, ["btcusdt@aggTrade", "btcusdt@depth@100ms", "btcusdt@bookTicker"]),
        ("1000ms", True, ["btcusdt@aggTrade", "btcusdt@depth", "btcusdt@bookTicker"]),
        ("100ms", False, ["btcusdt@aggTrade", "btcusdt@depth@100ms"]),
    ],
)
def test_each_symbol_gets_its_book_streams(depth: str, ticker: bool, expected: list[str]) -> None:
    settings = settings_of(IngestSettings, depth=depth, book_ticker=ticker, mode="aggTrade")
    assert symbol_streams("btcusdt", settings) == expected


def test_symbols_all_stands_alone() -> None:
    assert settings_of(IngestSettings, symbols="ALL").all_symbols
    assert not settings_of(IngestSettings, symbols="btcusdt").all_symbols
    with pytest.raises(ValidationError, match="stands alone"):
        settings_of(IngestSettings, symbols="all,btcusdt")


def test_a_weight_budget_below_one_snapshot_fails_at_start_naming_the_variables() -> None:
    with pytest.raises(ConfigError, match="INGEST_REST_WEIGHT_PER_MINUTE"):
        load_settings(rest_weight_per_minute=100, depth_snapshot_limit=5000)
    with pytest.raises(ConfigError, match="INGEST_DEPTH"):
        load_settings(depth="10ms")


def test_a_connection_must_hold_one_symbols_streams() -> None:
    with pytest.raises(ValidationError, match="INGEST_STREAMS_PER_CONNECTION"):
        settings_of(IngestSettings, depth="100ms", streams_per_connection=2)


# --- the plan of streams over connections ---------------------------------------------------------


@given(
    count=st.integers(min_value=1, max_value=1600),
    per_connection=st.integers(min_value=3, max_value=1024),
    depth=st.sampled_from(["off", "100ms", "1000ms"]),
    ticker=st.booleans(),
)
def test_plan_keeps_every_connection_within_its_limit_and_each_symbol_on_one(
    count: int, per_connection: int, depth: str, ticker: bool
) -> None:
    settings = settings_of(
        IngestSettings, depth=depth, book_ticker=ticker, streams_per_connection=per_connection
    )
    symbols = [f"sym{i}usdt" for i in range(count)]
    plan = plan_streams(symbols, settings)
    assert all(1 <= len(shard) <= per_connection for shard in plan.shards)
    streams = [s for shard in plan.shards for s in shard]
    assert len(streams) == len(set(streams)) == count * len(symbol_streams("x", settings))
    assert set(plan.symbols) == set(streams)
    homes: dict[str, int] = {}
    for index, shard in enumerate(plan.shards):
        for stream in shard:
            assert homes.setdefault(plan.symbols[stream], index) == index, "a symbol split over connections"
    per_symbol = len(symbol_streams("x", settings))
    assert len(plan.shards) == -(-count // (per_connection // per_symbol)), "as few connections as fit"


def test_the_whole_market_fits_binance_limits() -> None:
    """1,500 symbols with trades, depth@100ms and bookTicker: 4,500 streams on 5 connections of <= 1,024."""
    settings = settings_of(IngestSettings, depth="100ms")
    plan = plan_streams([f"s{i}usdt" for i in range(1500)], settings)
    assert [len(s) for s in plan.shards] == [1023, 1023, 1023, 1023, 408]


def test_exchange_info_gives_the_trading_spot_symbols() -> None:
    body = json.dumps(
        {
            "symbols": [
                {"symbol": "BTCUSDT", "status": "TRADING", "isSpotTradingAllowed": True},
                {"symbol": "OLDUSDT", "status": "BREAK", "isSpotTradingAllowed": True},
                {"symbol": "MRGUSDT", "status": "TRADING", "isSpotTradingAllowed": False},
                {"symbol": "ETHUSDT", "status": "TRADING"},
            ]
        }
    ).encode()
    assert parse_trading_symbols(body) == ("BTCUSDT", "ETHUSDT")


@given(st.sets(st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=3, max_size=8), max_size=60), st.integers(1, 7))
def test_market_shares_never_overlap_and_cover_every_symbol(symbols: set[str], count: int) -> None:
    listed = list(symbols)
    shares = [market_share(listed, index, count) for index in range(count)]
    flat = [s for share in shares for s in share]
    assert sorted(flat) == sorted(symbols)
    assert max(map(len, shares)) - min(map(len, shares)) <= 1, "as even as can be"


def test_a_shard_index_must_be_below_the_count() -> None:
    with pytest.raises(ConfigError, match="INGEST_ALL_SHARD_INDEX"):
        load_settings(all_shard_index=2, all_shard_count=2)


def test_the_command_line_turns_books_on_for_the_whole_market() -> None:
    settings = settings_from_args(build_parser().parse_args(["--depth", "1000ms", "--symbols", "all"]))
    assert (settings.depth, settings.depth_interval_ms, settings.all_symbols) == ("1000ms", 1000, True)
