"""The REST side: time, exchangeInfo, aggTrades (selection, limits, errors) and the fault knobs."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Coroutine
from typing import Any

import aiohttp
import pytest

from cryptopipe.replay import ReplayConfig, ReplayExchange
from cryptopipe.replay.testing import ReplayExchangeFactory
from cryptopipe.schemas.binance import parse_rest_agg_trades

TIMEOUT = 20.0


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 60))


async def get(session: aiohttp.ClientSession, url: str, **params: Any) -> tuple[int, Any]:
    async with session.get(url, params={k: str(v) for k, v in params.items()}) as response:
        return response.status, json.loads(await response.read())


@pytest.fixture
def played(replay_exchange_factory: ReplayExchangeFactory) -> Any:
    """An exchange whose tape (300 synthetic trades, two symbols) has played to its end."""
    ex = replay_exchange_factory(
        symbols=("BTCUSDT", "ETHUSDT"), rate=500.0, seed=3, count=300, speed="max", start_on_subscribe=False
    )
    assert ex.wait_finished(TIMEOUT)
    return ex


def _get_sync(url: str, **params: Any) -> tuple[int, Any]:
    async def go() -> tuple[int, Any]:
        async with aiohttp.ClientSession() as session:
            return await get(session, url, **params)

    return run(go())


def test_server_time_follows_the_clock_offset(replay_exchange_factory: ReplayExchangeFactory) -> None:
    ex = replay_exchange_factory(clock_offset_ms=5000)
    before = time.time_ns() // 1_000_000
    status, body = _get_sync(f"{ex.rest_url}/api/v3/time")
    after = time.time_ns() // 1_000_000
    assert status == 200
    assert before + 5000 <= body["serverTime"] <= after + 5000


def test_server_time_in_microseconds_on_request() -> None:
    async def go() -> None:
        async with ReplayExchange(ReplayConfig()) as ex, aiohttp.ClientSession() as session:
            headers = {"X-MBX-TIME-UNIT": "MICROSECOND"}
            async with session.get(f"{ex.rest_url}/api/v3/time", headers=headers) as response:
                assert (await response.json())["serverTime"] > 10**15
            async with session.get(f"{ex.rest_url}/api/v3/time", headers={"X-MBX-TIME-UNIT": "HOURS"}) as bad:
                assert bad.status == 400
                assert (await bad.json())["code"] == -1100

    run(go())


def test_delay_applies_to_both_directions_of_a_rest_exchange() -> None:
    delay_us = 150_000

    async def go() -> None:
        async with ReplayExchange(ReplayConfig(delay_ms=150)) as ex, aiohttp.ClientSession() as session:
            await get(session, f"{ex.rest_url}/api/v3/ping")  # warm the connection pool
            sent = time.time_ns() // 1000
            async with session.get(
                f"{ex.rest_url}/api/v3/time", headers={"X-MBX-TIME-UNIT": "MICROSECOND"}
            ) as response:
                server_time = (await response.json())["serverTime"]
            received = time.time_ns() // 1000
        slack = 1000  # clock granularity, 1 ms
        assert received - sent >= 2 * delay_us - slack
        assert server_time - sent >= delay_us - slack  # the request was held back...
        assert received - server_time >= delay_us - slack  # ...and so was the response

    run(go())


def test_delay_applies_to_websocket_frames() -> None:
    async def go() -> None:
        config = ReplayConfig(delay_ms=100, symbols=("BTCUSDT",), rate=50.0, burst=False)
        async with ReplayExchange(config) as ex, aiohttp.ClientSession() as session:
            url = f"{ex.ws_url}/ws/btcusdt@trade?timeUnit=MICROSECOND"
            async with session.ws_connect(url) as ws:
                for _ in range(3):
                    msg = await asyncio.wait_for(ws.receive(), TIMEOUT)
                    received = time.time_ns() // 1000
                    assert received - json.loads(msg.data)["E"] >= 100_000 - 1000

    run(go())


def test_exchange_info_lists_the_served_symbols(played: Any) -> None:
    status, body = _get_sync(f"{played.rest_url}/api/v3/exchangeInfo")
    assert status == 200
    assert body["timezone"] == "UTC"
    assert isinstance(body["serverTime"], int)
    by_symbol = {s["symbol"]: s for s in body["symbols"]}
    assert set(by_symbol) == {"BTCUSDT", "ETHUSDT"}
    btc = by_symbol["BTCUSDT"]
    assert (btc["status"], btc["baseAsset"], btc["quoteAsset"]) == ("TRADING", "BTC", "USDT")
    price_filter = next(f for f in btc["filters"] if f["filterType"] == "PRICE_FILTER")
    assert price_filter["tickSize"] == "0.01000000"
    status, one = _get_sync(f"{played.rest_url}/api/v3/exchangeInfo", symbol="ETHUSDT")
    assert [s["symbol"] for s in one["symbols"]] == ["ETHUSDT"]
    status, some = _get_sync(f"{played.rest_url}/api/v3/exchangeInfo", symbols='["ETHUSDT","BTCUSDT"]')
    assert [s["symbol"] for s in some["symbols"]] == ["ETHUSDT", "BTCUSDT"]
    status, bad = _get_sync(f"{played.rest_url}/api/v3/exchangeInfo", symbol="NOPEUSDT")
    assert (status, bad["code"]) == (400, -1121)


def test_agg_trades_selection(played: Any) -> None:
    history = played.history("BTCUSDT")
    assert len(history) > 100
    url = f"{played.rest_url}/api/v3/aggTrades"

    def ids(**params: Any) -> list[int]:
        status, body = _get_sync(url, symbol="BTCUSDT", **params)
        assert status == 200, body
        return [item["a"] for item in body]

    all_ids = [a.a for a in history]
    assert ids() == all_ids[-500:]
    assert ids(limit=10) == all_ids[-10:]
    assert ids(fromId=all_ids[5], limit=3) == all_ids[5:8]
    assert ids(fromId=all_ids[-1] + 1) == []
    start_ms, end_ms = history[20].T // 1000, history[60].T // 1000
    expected = [a.a for a in history if start_ms <= a.T // 1000 <= end_ms]
    assert ids(startTime=start_ms, endTime=end_ms, limit=1000) == expected
    assert ids(startTime=start_ms, endTime=end_ms, limit=5) == expected[:5]
    assert ids(startTime=start_ms, limit=1000) == [a.a for a in history if start_ms <= a.T // 1000]
    assert ids(endTime=end_ms, limit=1000) == [a.a for a in history if end_ms >= a.T // 1000]


def test_agg_trades_body_matches_history_and_parses(played: Any) -> None:
    async def go() -> tuple[bytes, bytes]:
        async with aiohttp.ClientSession() as session:
            url = f"{played.rest_url}/api/v3/aggTrades?symbol=ETHUSDT&limit=1000"
            async with (
                session.get(url) as ms,
                session.get(url, headers={"X-MBX-TIME-UNIT": "MICROSECOND"}) as us,
            ):
                return await ms.read(), await us.read()

    ms_body, us_body = run(go())
    history = played.history("ETHUSDT")
    in_ms = parse_rest_agg_trades(ms_body)
    in_us = parse_rest_agg_trades(us_body)
    assert [(a.a, a.p, a.q, a.f, a.l, a.T, a.m) for a in in_us] == [
        (h.a, h.p, h.q, h.f, h.l, h.T, h.m) for h in history
    ]
    assert [a.T for a in in_ms] == [h.T // 1000 for h in history]


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({}, -1102),
        ({"symbol": "NOPEUSDT"}, -1121),
        ({"symbol": "BTCUSDT", "fromId": "abc"}, -1100),
        ({"symbol": "BTCUSDT", "startTime": "-5"}, -1100),
        ({"symbol": "BTCUSDT", "limit": "0"}, -1130),
        ({"symbol": "BTCUSDT", "limit": "1001"}, -1130),
        ({"symbol": "BTCUSDT", "fromId": "1", "startTime": "1"}, -1128),
        ({"symbol": "BTCUSDT", "startTime": "0", "endTime": str(3_600_001)}, -1127),
    ],
)
def test_agg_trades_errors(played: Any, params: dict[str, str], code: int) -> None:
    status, body = _get_sync(f"{played.rest_url}/api/v3/aggTrades", **params)
    assert status == 400
    assert body["code"] == code
    assert body["msg"]


def test_missed_frames_can_be_backfilled_exactly(replay_exchange_factory: ReplayExchangeFactory) -> None:
    """A client that keeps being dropped fills every gap from REST and ends with exactly the tape."""
    ex = replay_exchange_factory(
        symbols=("BTCUSDT",), rate=1500.0, seed=11, count=600, burst=False, drop_after=40, speed=1.0
    )

    async def go() -> dict[int, dict[str, Any]]:
        seen: dict[int, dict[str, Any]] = {}
        async with aiohttp.ClientSession() as session:
            done = False
            while not done:
                async with session.ws_connect(f"{ex.ws_url}/ws/btcusdt@aggTrade") as ws:
                    while True:
                        try:
                            msg = await asyncio.wait_for(ws.receive(), 0.3)
                        except TimeoutError:
                            done = ex.stats.finished  # tape over and nothing left in flight
                            if done:
                                break
                            continue
                        if msg.type != aiohttp.WSMsgType.TEXT:
                            break  # dropped: reconnect
                        data = json.loads(msg.data)
                        seen[data["a"]] = data
            # backfill every gap between the first and last id seen, page by page
            first, last = min(seen), max(seen)
            cursor = first
            while cursor <= last:
                missing = next((i for i in range(cursor, last + 1) if i not in seen), None)
                if missing is None:
                    break
                status, page = await get(
                    session, f"{ex.rest_url}/api/v3/aggTrades", symbol="BTCUSDT", fromId=missing, limit=1000
                )
                assert status == 200
                assert page
                for item in page:
                    seen.setdefault(item["a"], {**item, "backfilled": True})
                cursor = page[-1]["a"] + 1
        return seen

    seen = run(go())
    history = ex.history("BTCUSDT")
    assert ex.stats.close_reasons["drop_after"] >= 2  # the client really missed frames
    assert any(v.get("backfilled") for v in seen.values())
    lo, hi = min(seen), max(seen)
    expected = [h for h in history if lo <= h.a <= hi]
    assert sorted(seen) == [h.a for h in expected]
    for h in expected:
        got = seen[h.a]
        assert (got["p"], got["q"], got["T"], got["m"]) == (str(h.p), str(h.q), h.T // 1000, h.m)
