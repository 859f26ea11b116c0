"""The snapshot queue against a small REST server: weight budget, Retry-After, the exchange's count."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import REGISTRY

from cryptopipe.ingest.book.weight import WeightBudget, depth_weight
from cryptopipe.ingest.snapshots import USED_WEIGHT_HEADER, SnapshotQueue, retry_after_s
from cryptopipe.schemas import DepthSnapshot

Handler = Callable[[web.Request], Awaitable[web.Response]]


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def serve(handler: Handler) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_get("/api/v3/depth", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


def book(symbol: str, update_id: int) -> bytes:
    return f'{{"lastUpdateId":{update_id},"bids":[["1.00","2"]],"asks":[["1.01","3"]]}}'.encode()


async def fetch_all(handler: Handler, symbols: list[str], budget: WeightBudget) -> list[DepthSnapshot]:
    """Ask for ``symbols``' snapshots (each twice: one request each) and wait for every one."""
    runner, url = await serve(handler)
    got: list[DepthSnapshot] = []
    done = asyncio.Event()

    def deliver(snapshot: DepthSnapshot, receive_time_us: int) -> None:
        got.append(snapshot)
        if len(got) == len(symbols):
            done.set()

    async with aiohttp.ClientSession() as session:
        queue = SnapshotQueue(
            session, url, deliver, limit=100, budget=budget, workers=2, retry_initial_s=0.01, retry_max_s=0.05
        )
        for symbol in symbols + symbols:
            queue.request(symbol)
        task = asyncio.create_task(queue.run())
        try:
            await asyncio.wait_for(done.wait(), 30)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await runner.cleanup()
    return got


def test_a_storm_of_requests_waits_for_the_weight_budget_and_counts_the_waits() -> None:
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.query["symbol"])
        assert request.query["limit"] == "100"
        return web.Response(body=book(request.query["symbol"], len(seen)), content_type="application/json")

    symbols = [f"S{i}USDT" for i in range(6)]
    waits = value("cryptopipe_ingest_book_snapshot_waits_total", cause="weight")
    # Two snapshots (weight 5 each) per 0.2 s window: six symbols need at least two waits.
    budget = WeightBudget(2 * depth_weight(100), window_s=0.2)
    got = asyncio.run(fetch_all(handler, symbols, budget))
    assert sorted(s.symbol for s in got) == sorted(symbols)
    assert sorted(seen) == sorted(symbols), "one request per symbol, however often it was asked for"
    assert value("cryptopipe_ingest_book_snapshot_waits_total", cause="weight") >= waits + 2


def test_429_retry_after_holds_every_request_back_and_the_request_is_made_again() -> None:
    answers: list[int] = []

    async def handler(request: web.Request) -> web.Response:
        if not answers:
            answers.append(429)
            return web.json_response(
                {"code": -1003, "msg": "Too many requests"}, status=429, headers={"Retry-After": "0.3"}
            )
        answers.append(200)
        headers = {USED_WEIGHT_HEADER: "17"}
        return web.Response(
            body=book(request.query["symbol"], 5), content_type="application/json", headers=headers
        )

    limited = value("cryptopipe_ingest_book_snapshot_requests_total", result="rate_limited")
    waited = value("cryptopipe_ingest_book_snapshot_waits_total", cause="retry_after")
    got = asyncio.run(fetch_all(handler, ["BTCUSDT", "ETHUSDT"], WeightBudget(1000)))
    assert sorted(s.symbol for s in got) == ["BTCUSDT", "ETHUSDT"]
    assert answers.count(429) == 1
    assert value("cryptopipe_ingest_book_snapshot_requests_total", result="rate_limited") == limited + 1
    assert value("cryptopipe_ingest_book_snapshot_waits_total", cause="retry_after") >= waited + 1
    assert value("cryptopipe_ingest_rest_weight_used") == 17


def test_the_exchange_count_is_taken_into_the_budget() -> None:
    budget = WeightBudget(100)
    seen: list[Any] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.query["symbol"])
        headers = {USED_WEIGHT_HEADER: "99"}  # other clients of the IP used nearly all of it
        return web.Response(
            body=book(request.query["symbol"], 1), content_type="application/json", headers=headers
        )

    asyncio.run(fetch_all(handler, ["BTCUSDT"], budget))
    assert budget.used() == 99
    assert budget.try_spend(5) > 0, "no room left this minute"


def test_retry_after_header_is_read_in_seconds_capped_and_defaulted() -> None:
    assert retry_after_s("12") == 12.0
    assert retry_after_s(None) == 1.0
    assert retry_after_s("soon") == 1.0
    assert retry_after_s("100000") == 300.0
