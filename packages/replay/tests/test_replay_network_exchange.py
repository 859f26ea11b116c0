"""The network conditions as the replay exchange plays them, over loopback.

Only bounds that scheduling cannot break: a sleep is never shorter than asked, so round trips
and frame delays are checked from below; the server clock is checked against the exchange's
own :class:`~cryptopipe.replay.network.ServerClock` within half a round trip (NTP's bound).
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from cryptopipe.replay.config import ReplayConfig, ReplaySettings
from cryptopipe.replay.exchange import ReplayExchange
from cryptopipe.schemas import load_settings

pytestmark = pytest.mark.slow
HEADERS = {"X-MBX-TIME-UNIT": "MICROSECOND"}


async def _times(exchange: ReplayExchange, count: int) -> list[tuple[int, int, int]]:
    """``count`` times (local send ns, server µs, local receive ns) of GET /api/v3/time."""
    out = []
    async with aiohttp.ClientSession() as session:
        for _ in range(count):
            sent = time.time_ns()
            async with session.get(f"{exchange.rest_url}/api/v3/time", headers=HEADERS) as response:
                server_us = (await response.json())["serverTime"]
            out.append((sent, server_us, time.time_ns()))
    return out


def test_rest_directions_are_delayed_at_least_their_floor() -> None:
    config = ReplayConfig(
        symbols=("BTCUSDT",),
        delay_ms=10,
        jitter_ms=5.0,
        jitter_distribution="pareto",
        rest_request_delay_ms=30.0,
        rest_response_delay_ms=5.0,
    )

    async def scenario() -> list[tuple[int, int, int]]:
        async with ReplayExchange(config) as exchange:
            return await _times(exchange, 12)

    for sent, server_us, received in asyncio.run(scenario()):
        # Pareto: the floor is the base; the request leg alone is at least 30 ms.
        assert server_us * 1000 - sent >= 30e6 - 1e3
        assert received - sent >= 35e6
        assert received - server_us * 1000 >= 5e6 - 1e3


def test_the_server_clock_drifts_and_steps_as_configured() -> None:
    config = ReplayConfig(
        symbols=("BTCUSDT",),
        clock_offset_ms=250,
        clock_drift_ppm=20_000.0,
        clock_step_ms=100.0,
        clock_step_after_s=0.3,
    )

    async def scenario() -> tuple[list[tuple[int, int, int]], list[float]]:
        async with ReplayExchange(config) as exchange:
            taken = await _times(exchange, 3)
            await asyncio.sleep(0.4)
            taken += await _times(exchange, 3)
            truth = [exchange.clock.offset_at_ns((s + r) // 2) / 1e6 for s, _, r in taken]
            return taken, truth

    taken, truth = asyncio.run(scenario())
    for (sent, server_us, received), true_ms in zip(taken, truth, strict=True):
        measured_ms = (server_us * 1000 - (sent + received) / 2) / 1e6
        assert measured_ms == pytest.approx(true_ms, abs=(received - sent) / 2e6 + 0.01)
    assert truth[-1] > 350  # 0.4 s after the first exchanges, surely past the step: 100 ms, plus drift


def test_ws_frames_arrive_no_earlier_than_their_delay() -> None:
    config = ReplayConfig(
        symbols=("BTCUSDT",), rate=200.0, ws_delay_ms=20.0, jitter_ms=10.0, clock_offset_ms=-80
    )

    async def scenario() -> list[float]:
        lags: list[float] = []
        async with ReplayExchange(config) as exchange, aiohttp.ClientSession() as session:
            url = f"{exchange.ws_url}/stream?streams=btcusdt@trade&timeUnit=MICROSECOND"
            async with session.ws_connect(url) as ws:
                while len(lags) < 40:
                    message = await ws.receive(timeout=30)
                    received = time.time_ns()
                    data = message.json().get("data", {})
                    if "E" in data:
                        lags.append(
                            (received - exchange.clock.offset_at_ns(received) - data["E"] * 1000) / 1e6
                        )
        return lags

    lags = asyncio.run(scenario())
    assert min(lags) >= -1.0  # normal jitter is cut at 0: never early (1 ms for the drifting E stamp)
    assert sorted(lags)[len(lags) // 2] >= 10.0  # the median is near 20 ms, surely above 10


def test_settings_and_flags_name_the_conditions() -> None:
    settings = load_settings(
        ReplaySettings,
        jitter_ms=20.0,
        jitter_distribution="pareto",
        rest_request_delay_ms=45.0,
        rest_response_delay_ms=35.0,
        ws_delay_ms=40.0,
        clock_drift_ppm=50.0,
        clock_step_ms=100.0,
        clock_step_after_s=60.0,
    )
    net = settings.config().network()

    assert (net.rest_request.base_ms, net.rest_response.base_ms, net.ws.base_ms) == (45.0, 35.0, 40.0)
    assert net.ws.distribution == "pareto"
    assert settings.config().clock_step_after_s == 60.0
