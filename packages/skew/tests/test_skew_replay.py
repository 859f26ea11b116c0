"""Acceptance: against the replay exchange with an injected clock offset and a 40 ms network delay.

The replay's clock runs ``clock_offset_ms`` ahead of ours; ``delay_ms`` delays every REST
request and reply by 40 ms each way (symmetric) and every WebSocket frame by 40 ms after the
replay stamps it. The estimated offset and the skew-corrected network latency must each be
within ±2 ms of the truth, while the raw figure is off by the offset.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from statistics import median

import aiohttp
import pytest
from prometheus_client import REGISTRY

from cryptopipe.infra.testing import eventually
from cryptopipe.replay.config import ReplayConfig
from cryptopipe.replay.server import ThreadedExchange, run_in_thread
from cryptopipe.schemas.binance import event_to_trade, parse_event, split_frame
from cryptopipe.schemas.messages import Trade
from cryptopipe.skew import BinanceTimeReference, SkewEstimator

DELAY_MS = 40
STAMP_SLACK_MS = 0.01  # float rounding of microsecond stamps
pytestmark = pytest.mark.slow


@pytest.fixture(params=[250, -80], ids=["ahead250", "behind80"])
def exchange(request: pytest.FixtureRequest) -> Iterator[tuple[ThreadedExchange, int]]:
    config = ReplayConfig(symbols=("BTCUSDT",), rate=200.0, clock_offset_ms=request.param, delay_ms=DELAY_MS)
    with run_in_thread(config) as handle:
        yield handle, request.param


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def _receive_trades(ws_url: str, count: int) -> list[Trade]:
    trades: list[Trade] = []
    url = f"{ws_url}/stream?streams=btcusdt@trade&timeUnit=MICROSECOND"
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        while len(trades) < count:
            message = await ws.receive(timeout=30)
            receive_us = time.time_ns() // 1000
            assert message.type == aiohttp.WSMsgType.TEXT, message
            event = parse_event(split_frame(message.data).data)
            if event is not None:
                trades.append(event_to_trade(event, receive_time_us=receive_us, unit="MICROSECOND"))
    return trades


def test_offset_and_corrected_network_latency_are_within_2ms_of_the_truth(
    exchange: tuple[ThreadedExchange, int],
) -> None:
    handle, true_offset_ms = exchange
    estimator = SkewEstimator(BinanceTimeReference(handle.rest_url), samples=8, spacing_s=0)
    api_before = _metric("cryptopipe_api_response_seconds_count", endpoint="/api/v3/time")
    observed_before = _metric("cryptopipe_network_latency_corrected_seconds_count", symbol="BTCUSDT")

    async def scenario() -> list[Trade]:
        try:
            assert await estimator.update() is not None
        finally:
            await estimator.aclose()
        return await _receive_trades(handle.ws_url, 40)

    trades = asyncio.run(scenario())
    estimate = estimator.current
    assert estimate is not None

    # The clock offset: NTP's sign, reference - local.
    # The true offset is within the estimate's uncertainty whatever the scheduling (NTP's bound).
    bound_ms = estimate.uncertainty_ms + STAMP_SLACK_MS
    assert estimate.offset_ms == pytest.approx(true_offset_ms, abs=bound_ms)
    assert estimate.extras["time_unit"] == "MICROSECOND"
    assert estimate.rtt_ms >= 2 * DELAY_MS  # the delay is in the round trip ...
    # ... and honestly in the bound any asymmetry could reach; the interval assumes at most 10 ms of it
    assert estimate.components["round_trip_bound"] >= DELAY_MS
    assert estimate.components["asymmetry"] == pytest.approx(5.0)
    assert _metric("cryptopipe_clock_offset_seconds", reference="binance") == pytest.approx(
        true_offset_ms / 1000, abs=bound_ms / 1000
    )
    assert _metric("cryptopipe_api_response_seconds_count", endpoint="/api/v3/time") - api_before == 8

    raw_ms: list[float] = []
    corrected_ms: list[float] = []
    truth_ms: list[float] = []
    sent_to_received_ms: list[float] = []
    for trade in trades:
        corrected_us = estimator.observe_network_latency(
            trade.symbol, trade.receive_time_us, trade.trade_time_us
        )
        assert corrected_us is not None
        raw_ms.append((trade.receive_time_us - trade.trade_time_us) / 1000)
        corrected_ms.append(corrected_us / 1000)
        truth_ms.append((trade.receive_time_us - trade.trade_time_us) / 1000 + true_offset_ms)
        # E is stamped when the replay hands the frame to its 40 ms-delayed sender.
        sent_to_received_ms.append((trade.receive_time_us - trade.event_time_us) / 1000 + estimate.offset_ms)

    for raw, corrected, truth in zip(raw_ms, corrected_ms, truth_ms, strict=True):
        assert corrected == pytest.approx(truth, abs=bound_ms)
        assert raw == pytest.approx(truth - true_offset_ms, abs=0.001)  # raw is off by exactly the offset
    # Every frame carries the simulated network delay (less the offset's own error; scheduling only adds).
    assert min(sent_to_received_ms) >= DELAY_MS - bound_ms
    assert median(corrected_ms) - median(raw_ms) == pytest.approx(estimate.offset_ms, abs=0.001)
    observed = (
        _metric("cryptopipe_network_latency_corrected_seconds_count", symbol="BTCUSDT") - observed_before
    )
    assert observed == len(trades)


@pytest.mark.parametrize("microseconds", [True, False], ids=["us", "ms"])
def test_millisecond_server_time_is_read_as_the_middle_of_its_tick(microseconds: bool) -> None:
    config = ReplayConfig(symbols=("BTCUSDT",), clock_offset_ms=250, delay_ms=5)
    with run_in_thread(config) as handle:
        reference = BinanceTimeReference(handle.rest_url, microseconds=microseconds)
        estimator = SkewEstimator(reference, samples=6, spacing_s=0)

        async def once() -> None:
            try:
                estimate = await estimator.sample_once()
            finally:
                await estimator.aclose()
            assert estimate.offset_ms == pytest.approx(250, abs=estimate.uncertainty_ms + STAMP_SLACK_MS)
            resolution_ms = 0.001 if microseconds else 1.0
            assert estimate.uncertainty_ms == pytest.approx(estimate.rtt_ms / 2 + resolution_ms / 2)

        asyncio.run(once())
        assert reference.time_unit == ("MICROSECOND" if microseconds else "MILLISECOND")


def test_run_fits_the_recent_intervals_and_stops_on_request() -> None:
    config = ReplayConfig(symbols=("BTCUSDT",), clock_offset_ms=-80, delay_ms=2)
    with run_in_thread(config) as handle:
        estimator = SkewEstimator(
            BinanceTimeReference(handle.rest_url), samples=3, interval_s=0.05, window=3, spacing_s=0
        )

        async def scenario() -> None:
            stop = asyncio.Event()
            task = asyncio.create_task(estimator.run(stop))

            def three_intervals_done() -> bool:
                current = estimator.current
                return current is not None and current.samples >= 9

            await asyncio.to_thread(eventually, three_intervals_done, 30)
            stop.set()
            await asyncio.wait_for(task, 10)
            await estimator.aclose()

        started = time.monotonic()
        asyncio.run(scenario())

    current = estimator.current
    assert current is not None
    assert current.samples == 9  # three intervals of three
    assert current.offset_ms == pytest.approx(-80, abs=current.uncertainty_ms + STAMP_SLACK_MS)
    assert estimator.offset_us_at(current.taken_at_us) == pytest.approx(current.offset_us, abs=1)
    # The age is of the latest estimate, computed when read: never older than the time since the
    # run began, taken after the read (the gauge keeps ageing after the run ends; no timing bound).
    age = _metric("cryptopipe_clock_estimate_age_seconds", reference="binance")
    assert 0 <= age <= time.monotonic() - started


def test_a_dead_rest_endpoint_is_a_counted_error_not_a_crash() -> None:
    config = ReplayConfig(symbols=("BTCUSDT",))
    with run_in_thread(config) as handle:
        rest_url = handle.rest_url
    # The exchange is stopped: its port refuses connections now.
    estimator = SkewEstimator(BinanceTimeReference(rest_url, timeout_s=1.0), samples=4, spacing_s=0)
    before = _metric("cryptopipe_errors_total", component="skew", reason="connection")

    async def scenario() -> None:
        try:
            assert await estimator.update() is None
        finally:
            await estimator.aclose()

    asyncio.run(scenario())

    assert estimator.current is None
    assert estimator.last_error is not None
    assert estimator.last_error.reason == "connection"
    assert _metric("cryptopipe_errors_total", component="skew", reason="connection") - before == 2
