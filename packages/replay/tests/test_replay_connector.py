"""Binance's official Python connector (``binance-connector``) against the replay exchange: its
diff-depth and bookTicker streams and its REST ``depth`` call, used the way Binance documents a
local order book (buffer the stream, fetch a snapshot, apply what follows it)."""

from __future__ import annotations

import json
import threading
import time
from decimal import Decimal
from typing import Any

import pytest

from cryptopipe.replay.testing import ReplayExchangeFactory

spot = pytest.importorskip("binance.spot", reason="binance-connector is in the dev group")
stream = pytest.importorskip("binance.websocket.spot.websocket_stream")

TIMEOUT = 30.0


def wait_for(condition: Any, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_connector_streams_depth_and_book_ticker_and_fetches_depth(
    replay_exchange_factory: ReplayExchangeFactory,
) -> None:
    ex = replay_exchange_factory(symbols=("BTCUSDT",), rate=200.0, seed=5, book=True, speed=2.0)
    frames: list[dict[str, Any]] = []
    lock = threading.Lock()

    def on_message(_client: Any, message: str) -> None:
        with lock:
            frames.append(json.loads(message))

    client = stream.SpotWebsocketStreamClient(stream_url=ex.ws_url, on_message=on_message, is_combined=True)
    try:
        client.diff_book_depth(symbol="btcusdt", speed=100, id=1)
        client.diff_book_depth(symbol="btcusdt", speed=1000, id=2)  # btcusdt@depth@1000ms
        client.book_ticker(symbol="btcusdt", id=3)

        def by_stream() -> dict[str, list[dict[str, Any]]]:
            with lock:
                out: dict[str, list[dict[str, Any]]] = {}
                for frame in frames:
                    if "stream" in frame:
                        out.setdefault(frame["stream"], []).append(frame["data"])
                return out

        wanted = {"btcusdt@depth@100ms", "btcusdt@depth@1000ms", "btcusdt@bookTicker"}
        wait_for(lambda: wanted <= set(by_stream()), "all three streams")
        rest = spot.Spot(base_url=ex.rest_url)
        try:
            snapshot = rest.depth("BTCUSDT", limit=1000)
        finally:
            rest.session.close()
        last = snapshot["lastUpdateId"]
        wait_for(lambda: by_stream()["btcusdt@depth@100ms"][-1]["u"] > last, "a diff past the snapshot")
    finally:
        client.stop()
        client.socket_manager.ws.shutdown()  # stop() closes the WebSocket but leaves its socket open
    streams = by_stream()
    diffs = streams["btcusdt@depth@100ms"]
    assert all(d["e"] == "depthUpdate" and d["s"] == "BTCUSDT" for d in diffs)
    assert streams["btcusdt@depth@1000ms"][0]["e"] == "depthUpdate"
    assert {"u", "s", "b", "B", "a", "A"} <= set(streams["btcusdt@bookTicker"][0])
    book = {side: {Decimal(p): Decimal(q) for p, q in snapshot[side]} for side in ("bids", "asks")}
    following = [d for d in diffs if d["u"] > last]
    assert following[0]["U"] <= last + 1 <= following[0]["u"]  # Binance's condition to start syncing
    for before, diff in zip([None, *following], following, strict=False):
        assert before is None or diff["U"] == before["u"] + 1
        for side, key in (("bids", "b"), ("asks", "a")):
            for price, qty in diff[key]:
                book[side][Decimal(price)] = Decimal(qty)
                if not Decimal(qty):
                    del book[side][Decimal(price)]
        assert max(book["bids"]) < min(book["asks"])  # never crossed
