"""Playing a tape end to end: real recordings, clock modes, pacing, looping, the CLI and the bench."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cryptopipe.replay import ReplayConfig, ReplayExchange, bench, cli, run_in_thread
from cryptopipe.replay.testing import ReplayExchangeFactory, count_stream_lines, real_data_file

TIMEOUT = 30.0


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 120))


async def collect(url: str, ex: ReplayExchange | Any, *, idle: float = 0.3) -> list[dict[str, Any]]:
    """Every frame of ``url`` until the tape has finished and the socket has gone quiet."""
    out = []
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        while True:
            try:
                msg = await asyncio.wait_for(ws.receive(), idle)
            except TimeoutError:
                if ex.stats.finished:
                    return out
                continue
            assert msg.type == aiohttp.WSMsgType.TEXT, msg
            out.append(json.loads(msg.data))


def csv_file(tmp_path: Path) -> Path:
    path = tmp_path / "BTCUSDT-trades-2024-08-08.csv"
    path.write_text(
        "10,100.00000000,1.00000000,100,1723161255000,True,True\n"
        "11,100.01000000,2.00000000,200.02,1723161255400,False,True\n"
        "12,100.02000000,1.00000000,100.02,1723161255200,True,True\n"  # late by 200 ms
        "13,100.03000000,1.00000000,100.03,1723161256000,False,True\n"
    )
    return path


def test_real_recording_serves_every_trade(replay_exchange_factory: ReplayExchangeFactory) -> None:
    path = real_data_file("btcusdt_20240808.gz")
    expected = count_stream_lines(path, "@trade")
    ex = replay_exchange_factory(replay_files=(str(path),), speed="max", clock="original")
    frames = run(collect(f"{ex.ws_url}/stream?streams=btcusdt@trade/btcusdt@bookTicker", ex))
    trades = [f["data"] for f in frames if f["stream"] == "btcusdt@trade"]
    tickers = [f for f in frames if f["stream"] == "btcusdt@bookTicker"]
    assert len(trades) == expected == ex.stats.trades_played
    assert len(tickers) == count_stream_lines(path, "@bookTicker")  # passed through verbatim
    assert [t["t"] for t in trades] == [h.t for h in ex.history("BTCUSDT", "trade")]
    assert trades[0] == {
        "e": "trade",
        "E": 1723161255343,
        "s": "BTCUSDT",
        "t": 3735683259,
        "p": "61837.63000000",
        "q": "0.02000000",
        "T": 1723161255342,
        "m": True,
        "M": True,
    }
    assert ex.stats.skipped_lines == 1
    assert len(ex.history("BTCUSDT")) == expected  # REST backfill covers every trade, 1:1


def test_two_real_recordings_play_together(replay_exchange_factory: ReplayExchangeFactory) -> None:
    btc, eth = real_data_file("btcusdt_20240808.gz"), real_data_file("ethusdt_20240808.gz")
    ex = replay_exchange_factory(replay_files=(str(btc), str(eth)), speed="max", passthrough=False)
    frames = run(collect(f"{ex.ws_url}/stream?streams=btcusdt@aggTrade/ethusdt@aggTrade", ex))
    by_stream: dict[str, int] = {}
    for frame in frames:
        by_stream[frame["stream"]] = by_stream.get(frame["stream"], 0) + 1
    assert by_stream == {
        "btcusdt@aggTrade": count_stream_lines(btc, "@trade"),
        "ethusdt@aggTrade": count_stream_lines(eth, "@trade"),
    }
    symbols_in_order = [f["data"]["s"] for f in frames[:2000]]
    assert len(set(symbols_in_order)) == 2  # interleaved by time, not one file after the other


def test_clock_original_keeps_recorded_times(
    tmp_path: Path, replay_exchange_factory: ReplayExchangeFactory
) -> None:
    ex = replay_exchange_factory(replay_files=(str(csv_file(tmp_path)),), clock="original", speed="max")
    frames = run(collect(f"{ex.ws_url}/ws/btcusdt@trade", ex))
    assert [(f["t"], f["T"]) for f in frames] == [
        (10, 1723161255000),
        (11, 1723161255400),
        (12, 1723161255200),
        (13, 1723161256000),
    ]
    assert frames[2]["E"] == 1723161255400  # the late trade became known with trade 11


def test_clock_live_restamps_to_now_keeping_lateness(
    tmp_path: Path, replay_exchange_factory: ReplayExchangeFactory
) -> None:
    ex = replay_exchange_factory(replay_files=(str(csv_file(tmp_path)),), speed="max", clock_offset_ms=2000)
    before_us = time.time_ns() // 1000 + 2_000_000
    frames = run(collect(f"{ex.ws_url}/ws/btcusdt@trade?timeUnit=MICROSECOND", ex))
    after_us = time.time_ns() // 1000 + 2_000_000
    assert [f["t"] for f in frames] == [10, 11, 12, 13]
    assert all(before_us <= f["E"] <= after_us for f in frames)
    assert [f["E"] - f["T"] for f in frames] == [0, 0, 200_000, 0]
    rest = ex.history("BTCUSDT")
    assert [(h.a, h.T) for h in rest] == [(f["t"], f["T"]) for f in frames]


def test_clock_live_never_invents_out_of_order_trades(
    replay_exchange_factory: ReplayExchangeFactory,
) -> None:
    """Synthetic trades have varying E-T gaps; re-stamped trade times must still follow the ids."""
    ex = replay_exchange_factory(symbols=("BTCUSDT",), rate=2000.0, count=3000, speed="max", seed=7)
    frames = run(collect(f"{ex.ws_url}/ws/btcusdt@aggTrade?timeUnit=MICROSECOND", ex))
    assert len(frames) == 3000
    assert [f["a"] for f in frames] == sorted(f["a"] for f in frames)
    times = [f["T"] for f in frames]
    assert times == sorted(times)
    assert all(f["T"] <= f["E"] for f in frames)


def test_paced_playback_follows_recorded_spacing(tmp_path: Path) -> None:
    path = csv_file(tmp_path)  # 1 s from first to last trade

    async def go() -> float:
        async with ReplayExchange(ReplayConfig(replay_files=(str(path),), speed=2.0)) as ex:
            started = time.monotonic()
            frames = await collect(f"{ex.ws_url}/ws/btcusdt@trade", ex, idle=0.05)
            assert len(frames) == 4
            return time.monotonic() - started

    assert run(go()) >= 0.5 - 0.01  # at 2x, the 1 s recording takes at least 0.5 s


def test_speed_max_delivers_everything(replay_exchange_factory: ReplayExchangeFactory) -> None:
    ex = replay_exchange_factory(symbols=("BTCUSDT",), rate=10.0, count=2000, speed="max")
    frames = run(collect(f"{ex.ws_url}/ws/btcusdt@trade", ex))
    assert len(frames) == 2000  # 200 s of market at 10 msg/s, played as fast as the socket takes
    assert [f["t"] for f in frames] == [h.t for h in ex.history("BTCUSDT", "trade")]


def test_tape_waits_for_the_first_subscriber(replay_exchange_factory: ReplayExchangeFactory) -> None:
    ex = replay_exchange_factory(symbols=("BTCUSDT",), count=50, speed="max")
    assert not ex.stats.started
    assert ex.stats.trades_played == 0
    frames = run(collect(f"{ex.ws_url}/ws/btcusdt@trade", ex))
    assert len(frames) == 50
    assert ex.stats.started
    assert ex.stats.finished


def test_tape_can_start_without_subscribers() -> None:
    with run_in_thread(
        ReplayConfig(symbols=("ETHUSDT",), count=30, speed="max", start_on_subscribe=False)
    ) as ex:
        assert ex.wait_finished(TIMEOUT)
        assert ex.stats.trades_played == 30
        assert ex.stats.frames_sent == 0
        assert len(ex.history("ETHUSDT")) == 30
        assert ex.ws_url == f"ws://127.0.0.1:{ex.port}"
        assert ex.rest_url == f"http://127.0.0.1:{ex.port}"


def test_loop_restarts_the_source_with_growing_ids(
    tmp_path: Path, replay_exchange_factory: ReplayExchangeFactory
) -> None:
    ex = replay_exchange_factory(
        replay_files=(str(csv_file(tmp_path)),), speed="max", loop=True, clock="original"
    )

    async def go() -> list[dict[str, Any]]:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(f"{ex.ws_url}/ws/btcusdt@trade") as ws,
        ):
            return [json.loads((await asyncio.wait_for(ws.receive(), TIMEOUT)).data) for _ in range(12)]

    frames = run(go())
    assert [f["t"] for f in frames] == list(range(10, 22))
    assert frames[4]["T"] > frames[3]["T"]  # the second pass is later in time too
    assert ex.stats.loops >= 2
    assert not ex.stats.finished


def test_bad_data_line_stops_the_tape_with_file_and_line(
    tmp_path: Path, replay_exchange_factory: ReplayExchangeFactory
) -> None:
    path = tmp_path / "BTCUSDT-trades-2024-08-08.csv"
    path.write_text("1,10.0,1,10,1000,True,True\n2,10.0,1,10,oops,True,True\n")
    ex = replay_exchange_factory(replay_files=(str(path),), speed="max", start_on_subscribe=False)
    assert ex.wait_finished(TIMEOUT)
    assert ex.stats.error is not None
    assert ex.stats.error.startswith(f"{path}:2: ")
    assert ex.stats.trades_played == 1


# --- CLI ----------------------------------------------------------------------------------------


def test_parser_maps_flags_to_config() -> None:
    args = cli.build_parser().parse_args(
        [
            "--replay-file",
            "a.csv",
            "--replay-file",
            "ETHUSDT:b.zip",
            "--speed",
            "max",
            "--clock",
            "original",
            "--clock-offset-ms",
            "250",
            "--delay-ms",
            "20",
            "--drop-after",
            "100",
            "--symbols",
            "btcusdt,solusdt",
            "--no-burst",
            "--no-start-on-subscribe",
            "--loop",
        ]
    )
    config = cli.config_from_args(args)
    assert config.replay_files == ("a.csv", "ETHUSDT:b.zip")
    assert config.speed == float("inf")
    assert config.clock == "original"
    assert config.clock_offset_ms == 250
    assert (config.delay_ms, config.drop_after, config.symbols) == (20, 100, ("BTCUSDT", "SOLUSDT"))
    assert not config.burst
    assert not config.start_on_subscribe
    assert config.loop
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["--speed", "-3"])


def test_main_reports_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--replay-file", str(tmp_path / "nope.csv")]) == 2
    assert "nope.csv: no such file" in capsys.readouterr().err


def _cli(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "cryptopipe.replay.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def test_cli_ready_file_and_clean_sigterm(tmp_path: Path) -> None:
    ready = tmp_path / "ready.json"
    proc = _cli("--symbols", "BTCUSDT", "--ready-file", str(ready), "--log-level", "WARNING")
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        info = json.loads(ready.read_text())  # written before the line is printed
        assert line.strip() == f"replay-exchange listening on {info['ws_url']} (REST {info['rest_url']})"
        assert info["ws_url"] == f"ws://127.0.0.1:{info['port']}"

        async def server_time() -> int:
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"{info['rest_url']}/api/v3/time") as r,
            ):
                return int((await r.json())["serverTime"])

        assert run(server_time()) > 0
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=TIMEOUT)
        assert proc.returncode == 0, err
        assert not ready.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def test_cli_exits_when_the_tape_ends_or_fails(tmp_path: Path) -> None:
    done = _cli(
        "--symbols",
        "BTCUSDT",
        "--count",
        "20",
        "--speed",
        "max",
        "--no-start-on-subscribe",
        "--exit-on-finish",
    )
    out, err = done.communicate(timeout=TIMEOUT)
    assert done.returncode == 0, err
    assert out.startswith("replay-exchange listening on ws://127.0.0.1:")
    bad = tmp_path / "BTCUSDT-trades-2024-08-08.csv"
    bad.write_text("1,10.0,1,10,1000,True,True\n1,2,3\n")
    failed = _cli("--replay-file", str(bad), "--speed", "max", "--no-start-on-subscribe")
    _, err = failed.communicate(timeout=TIMEOUT)
    assert failed.returncode == 1
    assert f"{bad}:2: expected 7 comma-separated fields" in err


def test_bench_reports_frames_per_second(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    assert bench.main(["--count", "3000", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["frames"] == 3000
    assert result["frames_per_second"] > 0


def test_agg_trades_zip_serves_its_own_aggregates(
    tmp_path: Path, replay_exchange_factory: ReplayExchangeFactory
) -> None:
    path = tmp_path / "ETHUSDT-aggTrades-2025-01-01.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(
            "ETHUSDT-aggTrades-2025-01-01.csv",
            "100,2684.00000000,1.50000000,200,202,1735689600123456,True,True\n"
            "101,2684.01000000,0.10000000,203,203,1735689600223999,False,True\n",
        )
    ex = replay_exchange_factory(replay_files=(str(path),), speed="max", clock="original")
    url = f"{ex.ws_url}/stream?streams=ethusdt@aggTrade/ethusdt@trade&timeUnit=MICROSECOND"
    frames = run(collect(url, ex))
    assert [f["stream"] for f in frames] == ["ethusdt@aggTrade"] * 2  # no @trade from aggregates
    assert [(f["data"]["a"], f["data"]["f"], f["data"]["l"], f["data"]["T"]) for f in frames] == [
        (100, 200, 202, 1735689600123456),
        (101, 203, 203, 1735689600223999),
    ]
    assert [h.a for h in ex.history("ETHUSDT")] == [100, 101]
    assert ex.history("ETHUSDT", "trade") == []
