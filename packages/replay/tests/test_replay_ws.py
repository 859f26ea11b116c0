"""The WebSocket side of the replay exchange, over real sockets with an aiohttp client."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import aiohttp
import pytest

from cryptopipe.replay import ReplayConfig, ReplayExchange

TIMEOUT = 20.0


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 120))


async def until(condition: Callable[[], object], within: float = TIMEOUT, message: str = "") -> None:
    """Poll ``condition`` until truthy, failing after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(message or "condition not met in time")
        await asyncio.sleep(0.02)


async def recv_json(ws: aiohttp.ClientWebSocketResponse) -> Any:
    msg = await asyncio.wait_for(ws.receive(), TIMEOUT)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    return json.loads(msg.data)


async def recv_until_closed(ws: aiohttp.ClientWebSocketResponse) -> list[Any]:
    """Every text frame until the server closes (or drops) the connection."""
    out = []
    while True:
        msg = await asyncio.wait_for(ws.receive(), TIMEOUT)
        if msg.type == aiohttp.WSMsgType.TEXT:
            out.append(json.loads(msg.data))
        elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
            return out


def synthetic(**overrides: Any) -> ReplayConfig:
    base: dict[str, Any] = {"symbols": ("BTCUSDT", "ETHUSDT"), "rate": 2000.0, "seed": 1, "burst": False}
    base.update(overrides)
    return ReplayConfig(**base)


async def with_client(
    config: ReplayConfig,
    body: Callable[[ReplayExchange, aiohttp.ClientSession], Awaitable[Any]],
) -> Any:
    async with ReplayExchange(config) as ex, aiohttp.ClientSession() as session:
        return await body(ex, session)


def test_combined_stream_wraps_each_event_and_honours_time_unit() -> None:
    async def body(ex: ReplayExchange, session: aiohttp.ClientSession) -> None:
        url = f"{ex.ws_url}/stream?streams=btcusdt@trade/btcusdt@aggTrade&timeUnit=MICROSECOND"
        async with session.ws_connect(url) as ws:
            frames = [await recv_json(ws) for _ in range(20)]
        assert {f["stream"] for f in frames} == {"btcusdt@trade", "btcusdt@aggTrade"}
        for frame in frames:
            data = frame["data"]
            assert data["e"] == frame["stream"].split("@")[1]
            assert data["s"] == "BTCUSDT"
            assert data["T"] > 10**15  # microseconds
        trades = [f["data"] for f in frames if f["stream"] == "btcusdt@trade"]
        aggs = {f["data"]["a"]: f["data"] for f in frames if f["stream"] == "btcusdt@aggTrade"}
        for trade in trades:  # derived 1:1 for a trades-only source
            if trade["t"] in aggs:
                agg = aggs[trade["t"]]
                assert (agg["f"], agg["l"], agg["p"], agg["q"], agg["T"]) == (
                    trade["t"],
                    trade["t"],
                    trade["p"],
                    trade["q"],
                    trade["T"],
                )

    run(with_client(synthetic(), body))


def test_raw_endpoint_sends_bare_payloads_in_milliseconds() -> None:
    async def body(ex: ReplayExchange, session: aiohttp.ClientSession) -> None:
        async with session.ws_connect(f"{ex.ws_url}/ws/btcusdt@trade/ethusdt@aggTrade") as ws:
            frames = [await recv_json(ws) for _ in range(30)]
        assert all("stream" not in f for f in frames)
        assert {f["e"] for f in frames} <= {"trade", "aggTrade"}
        assert {(f["e"], f["s"]) for f in frames} <= {("trade", "BTCUSDT"), ("aggTrade", "ETHUSDT")}
        assert all(10**12 < f["T"] < 10**14 for f in frames)  # milliseconds

    run(with_client(synthetic(), body))


def test_subscribe_unsubscribe_and_list_subscriptions() -> None:
    async def body(ex: ReplayExchange, session: aiohttp.ClientSession) -> None:
        async with session.ws_connect(f"{ex.ws_url}/ws") as ws:
            await ws.send_json({"method": "LIST_SUBSCRIPTIONS", "id": 1})
            assert await recv_json(ws) == {"id": 1, "result": []}
            await ws.send_json(
                {"method": "SUBSCRIBE", "params": ["ethusdt@trade", "BTCUSDT@aggTrade"], "id": 2}
            )
            assert await recv_json(ws) == {"id": 2, "result": None}
            await ws.send_json({"method": "LIST_SUBSCRIPTIONS", "id": 3})
            listed = await recv_json(ws)
            while "id" not in listed:
                listed = await recv_json(ws)
            assert listed == {"id": 3, "result": ["ethusdt@trade", "btcusdt@aggTrade"]}
            await ws.send_json({"method": "UNSUBSCRIBE", "params": ["ethusdt@trade"], "id": 4})
            reply = await recv_json(ws)
            seen = set()
            while reply.get("id") != 4:
                seen.add(reply["e"])
                reply = await recv_json(ws)
            assert reply == {"id": 4, "result": None}
            after = [await recv_json(ws) for _ in range(20)]
            assert {(f["e"], f["s"]) for f in after} == {("aggTrade", "BTCUSDT")}
            assert seen <= {"trade", "aggTrade"}

    run(with_client(synthetic(), body))


def test_control_errors_use_binance_shape() -> None:
    async def body(ex: ReplayExchange, session: aiohttp.ClientSession) -> None:
        async with session.ws_connect(f"{ex.ws_url}/ws") as ws:
            await ws.send_str("{not json")
            bad_json = await recv_json(ws)
            await ws.send_json({"method": "SUBSCRIBE", "params": ["no stream here"], "id": 7})
            bad_stream = await recv_json(ws)
            await ws.send_json({"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": -1})
            bad_id = await recv_json(ws)
            await ws.send_json({"method": "EXPLODE", "params": [], "id": 9})
            bad_method = await recv_json(ws)
        assert bad_json["error"]["code"] == 3
        assert bad_json["id"] is None
        assert bad_stream["error"]["code"] == 2
        assert bad_stream["id"] == 7
        assert "no stream here" in bad_stream["error"]["msg"]
        assert bad_id["error"] == {
            "code": 2,
            "msg": "Invalid request: request ID must be an unsigned integer",
        }
        assert bad_method["error"]["code"] == 2
        assert bad_method["id"] == 9

    run(with_client(synthetic(), body))


def test_combined_property_switches_the_wrapper() -> None:
    async def body(ex: ReplayExchange, session: aiohttp.ClientSession) -> None:
        async with session.ws_connect(f"{ex.ws_url}/ws") as ws:
            await ws.send_json({"method": "GET_PROPERTY", "params": ["combined"], "id": 1})
            assert await recv_json(ws) == {"result": False, "id": 1}
            await ws.send_json({"method": "SET_PROPERTY", "params": ["combined", True], "id": 2})
            assert await recv_json(ws) == {"result": None, "id": 2}
            await ws.send_json({"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": 3})
            assert await recv_json(ws) == {"result": None, "id": 3}
            frame = await recv_json(ws)
        assert frame["stream"] == "btcusdt@trade"
        assert frame["data"]["e"] == "trade"

    run(with_client(synthetic(), body))


def test_more_than_max_streams_is_rejected() -> None:
    streams = [f"sym{i}usdt@trade" for i in range(1025)]

    async def body(ex: ReplayExchange, session: aiohttp.ClientSession) -> None:
        async with session.ws_connect(f"{ex.ws_url}/ws") as ws:
            await ws.send_json({"method": "SUBSCRIBE", "params": streams, "id": 1})
            rejected = await recv_json(ws)
            await ws.send_json({"method": "SUBSCRIBE", "params": streams[:1024], "id": 2})
            accepted = await recv_json(ws)
            await ws.send_json({"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": 3})
            one_more = await recv_json(ws)
        assert rejected["id"] == 1
        assert rejected["error"]["code"] == 2
        assert "too many streams" in rejected["error"]["msg"]
        assert accepted == {"result": None, "id": 2}
        assert one_more["id"] == 3
        assert one_more["error"]["code"] == 2
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await session.ws_connect(f"{ex.ws_url}/stream?streams={'/'.join(streams)}")
        assert info.value.status == 400

    run(with_client(synthetic(max_incoming_per_s=10), body))


def test_server_pings_and_keeps_a_ponging_client() -> None:
    async def body(ex: ReplayExchange, session: aiohttp.ClientSession) -> None:
        async with session.ws_connect(f"{ex.ws_url}/ws", autoping=False) as ws:
            for _ in range(5):  # 5 pings span longer than the pong timeout: answering keeps us alive
                msg = await asyncio.wait_for(ws.receive(), TIMEOUT)
                assert msg.type == aiohttp.WSMsgType.PING
                await ws.pong(msg.data)
            assert not ws.closed
        assert "pong_timeout" not in ex.stats.close_reasons

    run(with_client(synthetic(ping_interval_s=0.3, pong_timeout_s=1.0), body))


def test_connection_closed_when_pongs_stop() -> None:
    async def body(ex: ReplayExchange, session: aiohttp.ClientSession) -> None:
        async with session.ws_connect(f"{ex.ws_url}/ws", autoping=False) as ws:
            kinds = []
            while True:
                msg = await asyncio.wait_for(ws.receive(), TIMEOUT)
                kinds.append(msg.type)
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                    break
        assert aiohttp.WSMsgType.PING in kinds
        assert ex.stats.close_reasons == {"pong_timeout": 1}

    run(with_client(synthetic(ping_interval_s=0.1, pong_timeout_s=0.3), body))


def test_more_than_five_messages_per_second_closes_the_connection() -> None:
    async def body(ex: ReplayExchange, session: aiohttp.ClientSession) -> None:
        async with session.ws_connect(f"{ex.ws_url}/ws") as ws:
            for i in range(6):
                await ws.send_json({"method": "LIST_SUBSCRIPTIONS", "id": i})
            frames = await recv_until_closed(ws)
        assert len(frames) <= 5
        assert ex.stats.close_reasons == {"rate_limit": 1}

    run(with_client(synthetic(), body))


def test_server_shutdown_event_then_close() -> None:
    async def body(ex: ReplayExchange, session: aiohttp.ClientSession) -> None:
        async with session.ws_connect(f"{ex.ws_url}/ws/btcusdt@trade") as ws:
            frames = await recv_until_closed(ws)
        assert frames[-1]["e"] == "serverShutdown"
        assert 10**12 < frames[-1]["E"] < 10**14
        assert all(f["e"] == "trade" for f in frames[:-1])
        assert ex.stats.close_reasons == {"server_shutdown": 1}

    run(with_client(synthetic(shutdown_after_s=0.3), body))


def test_server_shutdown_on_demand_reaches_every_connection() -> None:
    async def body(ex: ReplayExchange, session: aiohttp.ClientSession) -> None:
        async with (
            session.ws_connect(f"{ex.ws_url}/ws") as a,
            session.ws_connect(f"{ex.ws_url}/stream?timeUnit=MICROSECOND") as b,
        ):
            await until(lambda: ex.stats.open_connections == 2)
            await ex.server_shutdown()
            got_a, got_b = await recv_until_closed(a), await recv_until_closed(b)
        assert [f["e"] for f in got_a] == ["serverShutdown"]
        assert [f["e"] for f in got_b] == ["serverShutdown"]
        assert got_b[0]["E"] > 10**15  # the connection's time unit

    run(with_client(synthetic(), body))


def test_drop_after_cuts_each_connection_after_n_frames() -> None:
    async def body(ex: ReplayExchange, session: aiohttp.ClientSession) -> None:
        for _ in range(2):
            async with session.ws_connect(f"{ex.ws_url}/ws/btcusdt@trade/ethusdt@trade") as ws:
                frames = await recv_until_closed(ws)
            assert len(frames) == 7
        assert ex.stats.close_reasons == {"drop_after": 2}
        assert ex.stats.frames_sent == 14

    run(with_client(synthetic(drop_after=7), body))


def test_a_dropped_client_misses_a_trade_even_if_it_reconnects_at_once() -> None:
    """The drop is a loss: the link is aborted only once a trade it will never get was played.

    At 50 trades/s an immediate reconnect beats the next trade (~20 ms away) nearly every time, so a
    drop at the limit itself would usually lose nothing.
    """

    async def body(ex: ReplayExchange, session: aiohttp.ClientSession) -> None:
        url = f"{ex.ws_url}/ws/btcusdt@trade"
        for _ in range(3):
            async with session.ws_connect(url) as ws:
                before = await recv_until_closed(ws)
            assert len(before) == 5
            async with session.ws_connect(url) as ws:
                after = await recv_json(ws)
            assert after["t"] > before[-1]["t"] + 1, "the trades played while it was away are missed"
        assert ex.stats.close_reasons["drop_after"] >= 3

    run(with_client(synthetic(symbols=("BTCUSDT",), rate=50.0, drop_after=5), body))


def _stalled_client(port: int, path: str) -> socket.socket:
    """A WebSocket client that completes the handshake and then never reads."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    return sock


def test_slow_consumer_is_disconnected_not_buffered() -> None:
    async def body(ex: ReplayExchange, session: aiohttp.ClientSession) -> None:
        sock = await asyncio.to_thread(_stalled_client, ex.port, "/ws/btcusdt@trade/ethusdt@trade")
        try:
            await until(lambda: ex.stats.slow_consumers == 1, within=60, message=f"{ex.stats}")
        finally:
            sock.close()
        assert ex.stats.close_reasons["slow_consumer"] == 1

    run(with_client(synthetic(rate=20_000.0, speed=5.0, queue_size=20), body))


def test_speed_max_waits_for_clients_but_drops_one_that_stalls() -> None:
    async def body(ex: ReplayExchange, session: aiohttp.ClientSession) -> None:
        # two frames per trade, so the stalled client's socket buffers (MBs on loopback) fill up
        path = "/ws/btcusdt@trade/btcusdt@aggTrade/ethusdt@trade/ethusdt@aggTrade"
        sock = await asyncio.to_thread(_stalled_client, ex.port, path)
        try:
            async with session.ws_connect(f"{ex.ws_url}/ws/btcusdt@trade") as ws:
                received = 0
                while received < ex.config.count * 0.5:  # BTC is ~2/3 of the trades
                    await recv_json(ws)
                    received += 1
                assert await ex.wait_finished(TIMEOUT)
        finally:
            sock.close()
        assert ex.stats.slow_consumers == 1

    run(
        with_client(
            synthetic(
                count=40_000, speed="max", queue_size=50, slow_client_timeout_s=0.3, ping_interval_s=30
            ),
            body,
        )
    )
