"""The order-book fault knobs and the REST weight budget, each doing what its setting says."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Coroutine
from typing import Any

import aiohttp

from cryptopipe.replay import ReplayConfig, ReplayExchange

TIMEOUT = 20.0


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 120))


def book_market(**overrides: Any) -> ReplayConfig:
    """Two synthetic books, BTC busy enough to change in every 100 ms window, at 5x speed."""
    base: dict[str, Any] = {
        "symbols": ("BTCUSDT", "ETHUSDT"),
        "rate": 400.0,
        "seed": 2,
        "burst": False,
        "book": True,
        "speed": 5.0,
    }
    base.update(overrides)
    return ReplayConfig(**base)


async def depth_diffs(ex: ReplayExchange, session: aiohttp.ClientSession, n: int) -> list[dict[str, Any]]:
    """The first ``n`` BTCUSDT depth@100ms diffs a new subscriber gets."""
    async with session.ws_connect(f"{ex.ws_url}/ws/btcusdt@depth@100ms") as ws:
        return [json.loads((await asyncio.wait_for(ws.receive(), TIMEOUT)).data) for _ in range(n)]


async def depth(
    session: aiohttp.ClientSession, ex: ReplayExchange, symbol: str = "BTCUSDT", **params: Any
) -> Any:
    query = {"symbol": symbol, **{k: str(v) for k, v in params.items()}}
    async with session.get(f"{ex.rest_url}/api/v3/depth", params=query) as response:
        return response.status, json.loads(await response.read()), response.headers


async def until(condition: Any) -> None:
    """Wait for ``condition()`` with a deadline."""
    deadline = asyncio.get_running_loop().time() + TIMEOUT
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def gaps(diffs: list[dict[str, Any]]) -> list[tuple[int, int]]:
    """(previous u, next U) wherever the chain breaks."""
    return [(a["u"], b["U"]) for a, b in itertools.pairwise(diffs) if b["U"] != a["u"] + 1]


def with_exchange(config: ReplayConfig, body: Any) -> Any:
    async def go() -> Any:
        async with ReplayExchange(config) as ex, aiohttp.ClientSession() as session:
            return await body(ex, session)

    return run(go())


def test_without_faults_the_diff_chain_is_whole() -> None:
    async def body(ex: ReplayExchange, session: aiohttp.ClientSession) -> None:
        assert gaps(await depth_diffs(ex, session, 30)) == []

    with_exchange(book_market(), body)


def test_drop_every_nth_depth_event_leaves_gaps() -> None:
    async def body(ex: ReplayExchange, session: aiohttp.ClientSession) -> None:
        diffs = await depth_diffs(ex, session, 30)
        assert len(gaps(diffs)) >= 30 // 4 - 1  # every 4th event of the stream is missing
        assert ex.stats.depth_events_dropped >= len(gaps(diffs))

    with_exchange(book_market(depth_drop_every=4), body)


def test_drop_at_an_update_id_leaves_one_gap_around_it() -> None:
    async def body(ex: ReplayExchange, session: aiohttp.ClientSession) -> None:
        diffs = await depth_diffs(ex, session, 40)
        ((before, after),) = gaps(diffs)
        assert before < 400 < after
        assert not any(d["U"] <= 400 <= d["u"] for d in diffs)
        _, book, _ = await depth(session, ex)
        assert book["lastUpdateId"] >= diffs[-1]["u"]  # the exchange's own book did move on

    with_exchange(book_market(depth_drop_update_id=400), body)


def test_snapshot_fails_for_the_first_k_requests_per_symbol() -> None:
    async def body(ex: ReplayExchange, session: aiohttp.ClientSession) -> None:
        await depth_diffs(ex, session, 1)  # the tape has started
        answers = [await depth(session, ex) for _ in range(3)]
        assert [(s, b.get("code")) for s, b, _ in answers] == [(503, -1001), (503, -1001), (200, None)]
        assert (await depth(session, ex, "ETHUSDT"))[0] == 503  # counted per symbol
        assert ex.stats.depth_snapshots_failed == 3

    with_exchange(book_market(depth_snapshot_fail=2), body)


def test_stale_snapshot_is_older_than_the_first_buffered_event() -> None:
    async def body(ex: ReplayExchange, session: aiohttp.ClientSession) -> None:
        first = (await depth_diffs(ex, session, 1))[0]  # subscribed, then buffered from U
        _, stale, _ = await depth(session, ex)
        assert stale["lastUpdateId"] < first["U"]
        _, fresh, _ = await depth(session, ex)
        assert fresh["lastUpdateId"] >= first["U"] - 1
        assert ex.stats.depth_snapshots_stale == 1

    with_exchange(book_market(depth_snapshot_stale=1, speed=1.0), body)


def test_a_stale_snapshot_is_a_real_older_book_when_one_was_known() -> None:
    async def body(ex: ReplayExchange, session: aiohttp.ClientSession) -> None:
        await until(lambda: ex.stats.depth_events_played >= 2)  # the tape plays unwatched: books exist
        async with session.ws_connect(f"{ex.ws_url}/ws/btcusdt@depth@100ms") as ws:
            first = json.loads((await asyncio.wait_for(ws.receive(), TIMEOUT)).data)
            _, stale, _ = await depth(session, ex)
        assert 0 < stale["lastUpdateId"] < first["U"]
        assert stale["bids"]
        assert stale["asks"]

    with_exchange(book_market(depth_snapshot_stale=1, start_on_subscribe=False), body)


def test_delayed_snapshot_is_the_book_when_asked() -> None:
    async def body(ex: ReplayExchange, session: aiohttp.ClientSession) -> None:
        async with session.ws_connect(f"{ex.ws_url}/ws/btcusdt@depth@100ms") as ws:
            first = json.loads((await asyncio.wait_for(ws.receive(), TIMEOUT)).data)
            _, book, _ = await depth(session, ex)
            received = [first]
            while received[-1]["u"] <= book["lastUpdateId"]:
                received.append(json.loads((await asyncio.wait_for(ws.receive(), TIMEOUT)).data))
        # the answer is at a diff boundary the stream reached, not at what the book became later
        assert book["lastUpdateId"] in {d["u"] for d in received} | {first["U"] - 1}
        assert ex.stats.depth_snapshots_served == 1

    with_exchange(book_market(depth_snapshot_delay_ms=300), body)


def test_rest_weight_is_counted_and_429_over_the_limit() -> None:
    async def body(ex: ReplayExchange, session: aiohttp.ClientSession) -> None:
        status, _, headers = await depth(session, ex, limit=5000)  # weight 250 > 12: refused
        assert (status, headers["X-MBX-USED-WEIGHT-1M"]) == (429, "0")
        assert int(headers["Retry-After"]) >= 1
        answers = [await depth(session, ex, limit=100) for _ in range(3)]  # weight 5 each
        assert [(s, h["X-MBX-USED-WEIGHT-1M"]) for s, _, h in answers] == [
            (200, "5"),
            (200, "10"),
            (429, "10"),
        ]
        assert answers[2][1]["code"] == -1003
        assert 1 <= int(answers[2][2]["Retry-After"]) <= 60
        assert ex.stats.rest_weight_refused == 2

    with_exchange(book_market(rest_weight_limit=12, start_on_subscribe=False), body)
