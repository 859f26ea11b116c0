"""Sources: data.binance.vision CSVs (parser properties included), recorded frames, synthetic, fetch."""

from __future__ import annotations

import gzip
import itertools
import json
import socket
import zipfile
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cryptopipe.replay import FetchError, ReplayConfigError, SourceError
from cryptopipe.replay.sources import (
    CsvSource,
    RawFrame,
    RecordedFramesSource,
    SyntheticSource,
    TradeRecord,
    csv_row,
    fetch_daily_file,
    open_file_source,
    parse_csv_row,
    parse_fetch_spec,
    symbol_spec,
    vision_url,
)
from cryptopipe.replay.testing import count_stream_lines, real_data_file

TRADES = [
    "3735683259,61837.63000000,0.02000000,1236.75260000,1723161255342,True,True",
    "3735683260,61837.64000000,0.00100000,61.83764000,1723161255350,False,True",
    "3735683261,61837.64000000,0.50000000,30918.82000000,1723161255350,False,True",
]
AGG_TRADES_US = [
    "100,2684.00000000,1.50000000,200,202,1735689600123456,True,True",
    "101,2684.01000000,0.10000000,203,203,1735689600123999,False,True",
]


def write_zip(path: Path, member: str, lines: list[str]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(member, "\n".join(lines) + "\n")
    return path


# --- CSV ----------------------------------------------------------------------------------------


def test_trades_csv_in_milliseconds(tmp_path: Path) -> None:
    path = tmp_path / "BTCUSDT-trades-2024-08-08.csv"
    path.write_text("\n".join(TRADES) + "\n")
    source = open_file_source(path)
    assert isinstance(source, CsvSource)
    assert source.symbols == {"BTCUSDT"}
    assert not source.agg_symbols
    records = list(source.events())
    assert [r.id for r in records] == [3735683259, 3735683260, 3735683261]
    first = records[0]
    assert (first.kind, first.symbol, first.price, first.qty) == (
        "trade",
        "BTCUSDT",
        Decimal("61837.63"),
        Decimal("0.02"),
    )
    assert first.trade_time_us == 1723161255342000
    assert first.buyer_is_maker
    assert first.best_match
    assert first.first_id == first.last_id == first.id


def test_agg_trades_zip_in_microseconds_with_a_header(tmp_path: Path) -> None:
    header = (
        "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker,is_best_match"
    )
    path = write_zip(
        tmp_path / "ETHUSDT-aggTrades-2025-01-01.zip",
        "ETHUSDT-aggTrades-2025-01-01.csv",
        [header, *AGG_TRADES_US],
    )
    source = open_file_source(path)
    assert source.symbols == {"ETHUSDT"}
    assert source.agg_symbols == {"ETHUSDT"}
    records = list(source.events())
    assert [(r.kind, r.id, r.first_id, r.last_id) for r in records] == [
        ("aggTrade", 100, 200, 202),
        ("aggTrade", 101, 203, 203),
    ]
    assert records[0].trade_time_us == 1735689600123456
    assert source.skipped_lines == 1  # the header


def test_explicit_symbol_and_sniffed_kind(tmp_path: Path) -> None:
    path = tmp_path / "day.csv"
    path.write_text("\n".join(AGG_TRADES_US) + "\n")
    with pytest.raises(SourceError, match="SYMBOL:PATH"):
        open_file_source(path)
    source = open_file_source(f"ethusdt:{path}")
    assert isinstance(source, CsvSource)
    assert source.kind == "aggTrades"
    assert source.symbol == "ETHUSDT"
    with pytest.raises(SourceError, match="no such file"):
        open_file_source(tmp_path / "missing.csv")


def test_late_trades_keep_file_order(tmp_path: Path) -> None:
    path = tmp_path / "BTCUSDT-trades-2024-08-08.csv"
    path.write_text("1,10.0,1,10,1000,True,True\n2,10.0,1,10,3000,True,True\n3,10.0,1,10,2000,True,True\n")
    records = list(open_file_source(path).events())
    assert [r.id for r in records] == [1, 2, 3]
    late = records[2]
    assert late.trade_time_us == 2_000_000
    assert late.event_time_us == 3_000_000
    assert [r.pace_ns for r in records] == sorted(r.pace_ns for r in records)


def test_bad_line_fails_fast_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "BTCUSDT-trades-2024-08-08.csv"
    path.write_text(TRADES[0] + "\n" + "3735683260,abc,0.1,1,1723161255350,False,True\n" + TRADES[2] + "\n")
    with pytest.raises(SourceError) as info:
        list(open_file_source(path).events())
    assert str(info.value).startswith(f"{path}:2: ")
    assert "price" in str(info.value)
    assert info.value.line == 2


def test_bad_lines_skipped_and_counted_on_request(tmp_path: Path) -> None:
    path = tmp_path / "BTCUSDT-trades-2024-08-08.csv"
    path.write_text(TRADES[0] + "\nnot,a,row\n" + TRADES[2] + "\n")
    source = open_file_source(path, skip_bad_lines=True)
    assert [r.id for r in source.events()] == [3735683259, 3735683261]
    assert source.bad_lines == 1


prices = st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal("999999"), places=8)
quantities = st.decimals(min_value=Decimal("0"), max_value=Decimal("90000"), places=8)
times_ms = st.integers(min_value=1_500_000_000_000, max_value=4_000_000_000_000)


@st.composite
def csv_records(draw: st.DrawFn) -> tuple[TradeRecord, bool]:
    kind = draw(st.sampled_from(["trade", "aggTrade"]))
    micros = draw(st.booleans())
    trade_id = draw(st.integers(min_value=0, max_value=2**53))
    first = draw(st.integers(min_value=0, max_value=2**53)) if kind == "aggTrade" else trade_id
    last = first + draw(st.integers(min_value=0, max_value=50)) if kind == "aggTrade" else trade_id
    t_us = draw(times_ms) * 1000 + (draw(st.integers(0, 999)) if micros else 0)
    record = TradeRecord(
        symbol="BTCUSDT",
        kind=kind,
        id=trade_id,
        price=draw(prices),
        qty=draw(quantities),
        first_id=first,
        last_id=last,
        trade_time_us=t_us,
        event_time_us=t_us,
        buyer_is_maker=draw(st.booleans()),
        best_match=draw(st.booleans()),
        pace_ns=t_us * 1000,
    )
    return record, micros


@given(csv_records())
def test_csv_row_round_trip(case: tuple[TradeRecord, bool]) -> None:
    record, micros = case
    line = csv_row(record, micros=micros)
    parsed = parse_csv_row(line, "trades" if record.kind == "trade" else "aggTrades", "BTCUSDT")
    assert parsed == record


@st.composite
def broken_rows(draw: st.DrawFn) -> str:
    fields = TRADES[0].split(",")
    column = draw(st.sampled_from([0, 1, 2, 4, 5, 6]))
    fields[column] = draw(st.sampled_from(["", "x", "-1", "1e", "NaN", "maybe", "--", "1.2.3"]))
    return ",".join(fields) if draw(st.booleans()) else ",".join(fields[: draw(st.integers(0, 6))])


@settings(max_examples=60)
@given(broken_rows())
def test_malformed_rows_are_rejected_with_a_reason(row: str) -> None:
    with pytest.raises(ValueError, match=r"\S"):
        parse_csv_row(row, "trades", "BTCUSDT")


# --- recorded frames ----------------------------------------------------------------------------


def frame_line(ns: int, stream: str, data: dict[str, object]) -> str:
    return f"{ns} " + json.dumps({"stream": stream, "data": data}, separators=(",", ":"))


def test_recorded_frames_mixed_streams(tmp_path: Path) -> None:
    trade = {
        "e": "trade",
        "E": 1723161255343,
        "s": "BTCUSDT",
        "t": 7,
        "p": "1.5",
        "q": "2",
        "T": 1723161255342,
        "m": True,
        "M": True,
    }
    agg = {
        "e": "aggTrade",
        "E": 1723161255343,
        "s": "ETHUSDT",
        "a": 9,
        "p": "2.5",
        "q": "1",
        "f": 20,
        "l": 21,
        "T": 1723161255342,
        "m": False,
        "M": True,
    }
    ticker = {"u": 1, "s": "BTCUSDT", "b": "1.4", "B": "1", "a": "1.6", "A": "1"}
    lines = [
        frame_line(1_000, "btcusdt@bookTicker", ticker),
        '2000 {"lastUpdateId":5,"bids":[],"asks":[]}',
        frame_line(3_000, "btcusdt@trade", trade),
        frame_line(4_000, "ethusdt@aggTrade", agg),
    ]
    path = tmp_path / "frames.txt"
    path.write_text("\n".join(lines) + "\n")
    source = open_file_source(path)
    assert isinstance(source, RecordedFramesSource)
    assert source.symbols == {"BTCUSDT", "ETHUSDT"}
    assert source.agg_symbols == {"ETHUSDT"}
    events = list(source.events())
    assert isinstance(events[0], RawFrame)
    assert json.loads(events[0].data) == ticker
    assert [(e.kind, e.id, e.first_id, e.last_id) for e in events[1:] if isinstance(e, TradeRecord)] == [
        ("trade", 7, 7, 7),
        ("aggTrade", 9, 20, 21),
    ]
    assert [e.pace_ns for e in events] == [1_000, 3_000, 4_000]
    assert source.skipped_lines == 1


def test_recorded_frames_bad_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "frames.gz"
    with gzip.open(path, "wt") as stream:
        stream.write(frame_line(1, "btcusdt@depth", {"e": "depthUpdate"}) + "\n")
        stream.write('2 {"stream":"btcusdt@trade","data":{"e":"trade","s":"BTCUSDT"}}\n')
    with pytest.raises(SourceError, match=rf"^{path}:2: invalid trade event"):
        list(open_file_source(path).events())
    lenient = open_file_source(path, skip_bad_lines=True)
    assert len(list(lenient.events())) == 1
    assert lenient.bad_lines == 1


def test_real_recording_yields_every_trade_line() -> None:
    path = real_data_file("btcusdt_20240808.gz")
    source = RecordedFramesSource(path, passthrough=False)
    trades = [e for e in source.events() if isinstance(e, TradeRecord)]
    assert len(trades) == count_stream_lines(path, "@trade")
    assert [t.id for t in trades] == list(range(trades[0].id, trades[0].id + len(trades)))  # gap-free
    assert source.skipped_lines == 1  # the REST snapshot line
    assert all(t.event_time_us >= t.trade_time_us for t in trades)


# --- synthetic ----------------------------------------------------------------------------------


def test_synthetic_is_deterministic_by_seed() -> None:
    def take(seed: int) -> list[TradeRecord]:
        source = SyntheticSource(["BTCUSDT", "ETHUSDT", "XRPUSDT"], rate=100.0, seed=seed, count=300)
        return list(source.events())

    assert take(5) == take(5)
    assert take(5) != take(6)
    assert len(take(5)) == 300


def test_synthetic_respects_tick_and_lot_sizes_and_rate() -> None:
    events = list(
        SyntheticSource(["BTCUSDT", "XRPUSDT"], rate=200.0, seed=1, burst=False, count=20_000).events()
    )
    for event in events[:2000]:
        spec = symbol_spec(event.symbol)
        assert event.price % Decimal(spec.tick) == 0
        assert event.price > 0
        assert event.qty % Decimal(spec.lot) == 0
        assert event.qty > 0
        assert event.event_time_us >= event.trade_time_us
    span_s = (events[-1].pace_ns - events[0].pace_ns) / 1e9
    assert len(events) / span_s == pytest.approx(200.0, rel=0.05)
    per_symbol = {s: [e.id for e in events if e.symbol == s] for s in ("BTCUSDT", "XRPUSDT")}
    for ids in per_symbol.values():
        assert ids == list(range(ids[0], ids[0] + len(ids)))


def test_synthetic_bursts_keep_the_mean_rate() -> None:
    events = list(SyntheticSource(["BTCUSDT"], rate=100.0, seed=2, burst=True, count=30_000).events())
    gaps = [(b.pace_ns - a.pace_ns) / 1e9 for a, b in itertools.pairwise(events)]
    assert len(events) / sum(gaps) == pytest.approx(100.0, rel=0.1)
    assert min(gaps) < 0.001 < max(gaps)  # bursty: some very short gaps, some long ones


# --- data.binance.vision download ---------------------------------------------------------------


def test_fetch_url_building() -> None:
    assert vision_url("btcusdt", "2024-03-01", "aggTrades") == (
        "https://data.binance.vision/data/spot/daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2024-03-01.zip"
    )
    assert parse_fetch_spec("ethusdt:2024-03-01:trades") == ("ETHUSDT", "2024-03-01", "trades")
    assert parse_fetch_spec("BTCUSDT:2024-03-01") == ("BTCUSDT", "2024-03-01", "aggTrades")
    for bad in ("BTCUSDT", "BTCUSDT:yesterday", "BTCUSDT:2024-03-01:klines"):
        with pytest.raises(ReplayConfigError):
            parse_fetch_spec(bad)


def test_fetch_failure_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    with pytest.raises(FetchError) as info:
        fetch_daily_file("BTCUSDT:2024-03-01", tmp_path, base_url=dead, timeout=5)
    assert info.value.url.endswith("/BTCUSDT-aggTrades-2024-03-01.zip")
    assert "--replay-file" in str(info.value)
    assert not list(tmp_path.iterdir())


def test_fetch_uses_the_cache(tmp_path: Path) -> None:
    cached = write_zip(tmp_path / "BTCUSDT-aggTrades-2024-03-01.zip", "x.csv", AGG_TRADES_US)
    assert fetch_daily_file("BTCUSDT:2024-03-01", tmp_path, base_url="http://127.0.0.1:9") == cached
