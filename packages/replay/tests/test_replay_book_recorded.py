"""``/api/v3/depth`` on the real recordings: the exchange's book is the recording's snapshot plus its
diffs, checked against a reference rebuilt here with Decimals, and against the recorded bookTicker."""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp

from cryptopipe.replay.config import ReplayConfig
from cryptopipe.replay.depth_feed import DepthFeed
from cryptopipe.replay.rest_depth import MAX_LIMIT
from cryptopipe.replay.sources import MergedSource, RawFrame, RecordedFramesSource
from cryptopipe.replay.sources.base import DepthSnapshotRecord
from cryptopipe.replay.tape import ReplayStats
from cryptopipe.replay.testing import ReplayExchangeFactory, real_data_file

TIMEOUT = 60.0


class ReferenceBook:
    """Binance's local-book procedure, written plainly: snapshot, then diffs with ``u`` past it."""

    def __init__(self) -> None:
        self.update_id: int | None = None
        self.sides: dict[str, dict[Decimal, Decimal]] = {"bids": {}, "asks": {}}
        self.waiting: list[dict[str, Any]] = []

    def snapshot(self, body: dict[str, Any]) -> None:
        self.update_id = body["lastUpdateId"]
        for side in ("bids", "asks"):
            self.sides[side] = {Decimal(p): Decimal(q) for p, q in body[side] if Decimal(q)}
        waiting, self.waiting = self.waiting, []
        for diff in waiting:
            self.diff(diff)

    def diff(self, data: dict[str, Any]) -> None:
        if self.update_id is None:
            self.waiting.append(data)
            return
        if data["u"] <= self.update_id:
            return
        assert data["U"] <= self.update_id + 1, "the recording has a gap"
        for side, key in (("bids", "b"), ("asks", "a")):
            for price, qty in data[key]:
                if Decimal(qty):
                    self.sides[side][Decimal(price)] = Decimal(qty)
                else:
                    self.sides[side].pop(Decimal(price), None)
        self.update_id = data["u"]

    def top(self, n: int) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        bids = sorted(self.sides["bids"].items(), reverse=True)[:n]
        asks = sorted(self.sides["asks"].items())[:n]
        return bids, asks


def recorded_lines(*paths: Path) -> Iterator[dict[str, Any]]:
    """Each line's JSON: stream frames as ``{"stream", "data"}``, the snapshot as itself."""
    for path in paths:
        with gzip.open(path, "rt") as lines:
            for line in lines:
                yield json.loads(line.partition(" ")[2])


def decimal_levels(levels: list[list[str]]) -> list[tuple[Decimal, Decimal]]:
    return [(Decimal(p), Decimal(q)) for p, q in levels]


def get_depth(rest_url: str, symbol: str, limit: int) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(f"{rest_url}/api/v3/depth?symbol={symbol}&limit={limit}") as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_rest_depth_while_playing_equals_the_recording_rebuilt_at_its_update_id(
    replay_exchange_factory: ReplayExchangeFactory,
) -> None:
    path = real_data_file("btcusdt_20240808.gz")
    ex = replay_exchange_factory(
        replay_files=(str(path),), speed="max", start_on_subscribe=False, rest_weight_limit=0
    )
    answers: list[dict[str, Any]] = []
    statuses: set[int] = set()
    while not ex.stats.finished:
        status, body = get_depth(ex.rest_url, "BTCUSDT", 100)
        statuses.add(status)
        if status == 200:
            answers.append(body)
        else:
            assert (status, body["code"]) == (503, -1001)  # before the snapshot line: no book yet
    status, final = get_depth(ex.rest_url, "BTCUSDT", 1000)
    assert status == 200
    answers.append(final)
    assert len({a["lastUpdateId"] for a in answers}) >= 2  # answers came at different points of the tape
    by_id = {a["lastUpdateId"]: a for a in answers}
    reference = ReferenceBook()
    checked = 0
    for line in recorded_lines(path):
        if "lastUpdateId" in line:
            reference.snapshot(line)
        elif line["stream"] == "btcusdt@depth@100ms":
            reference.diff(line["data"])
        else:
            continue
        answer = by_id.get(reference.update_id or 0)
        if answer is not None:
            depth = len(answer["bids"])
            assert (decimal_levels(answer["bids"]), decimal_levels(answer["asks"])) == reference.top(depth)
            checked += 1
    assert checked == len(by_id)
    assert final["lastUpdateId"] == reference.update_id  # at the end: the last u played
    assert len(final["bids"]) == len(final["asks"]) == 1000


def test_book_ticker_frames_match_the_rest_book_wherever_their_u_is_a_diffs_u() -> None:
    """Over both days of BTCUSDT (the book carries across the file boundary without a snapshot)."""
    paths = [real_data_file(name) for name in ("btcusdt_20240808.gz", "btcusdt_20240809.gz")]
    feed = DepthFeed(ReplayConfig(), ReplayStats(), lambda *args, **kwargs: None, lambda: 0)
    tickers: dict[int, dict[str, str]] = {}
    matched = 0

    def check(ticker: dict[str, str]) -> None:
        book = feed.books["BTCUSDT"].book
        assert book is not None
        bids, asks = book.top(1)
        assert (bids[0], asks[0]) == ((ticker["b"], ticker["B"]), (ticker["a"], ticker["A"]))
        assert Decimal(bids[0][0]) < Decimal(asks[0][0])

    for event in MergedSource([RecordedFramesSource(p) for p in paths]).events():
        if isinstance(event, DepthSnapshotRecord):
            feed.play_snapshot(event)
        elif isinstance(event, RawFrame) and feed.play_raw(event):
            book = feed.books["BTCUSDT"].book
            if book is not None and book.update_id in tickers:
                check(tickers.pop(book.update_id))
                matched += 1
        elif isinstance(event, RawFrame) and event.stream.endswith("@bookTicker"):
            ticker = json.loads(event.data)
            state = feed.books.get("BTCUSDT")
            if state is not None and state.book is not None and ticker["u"] == state.book.update_id:
                check(ticker)
                matched += 1
            else:
                tickers[ticker["u"]] = ticker
    assert feed.stats.book_gaps == 0
    assert matched >= 500, matched  # hundreds of such frames a day


def test_the_day_without_a_snapshot_has_no_book_until_one_is_known(
    replay_exchange_factory: ReplayExchangeFactory,
) -> None:
    path = real_data_file("ethusdt_20240809.gz")
    ex = replay_exchange_factory(replay_files=(str(path),), speed="max", start_on_subscribe=False)
    assert ex.wait_finished(TIMEOUT)
    status, body = get_depth(ex.rest_url, "ETHUSDT", 5)
    assert (status, body["code"]) == (503, -1001)
    assert ex.stats.depth_snapshots_failed == 1


def test_limits_are_cut_to_5000_and_checked(replay_exchange_factory: ReplayExchangeFactory) -> None:
    path = real_data_file("ethusdt_20240808.gz")
    ex = replay_exchange_factory(replay_files=(str(path),), speed="max", start_on_subscribe=False)
    assert ex.wait_finished(TIMEOUT)
    status, body = get_depth(ex.rest_url, "ETHUSDT", 10_000)
    assert status == 200
    assert 1000 < len(body["bids"]) <= MAX_LIMIT  # the diffs add levels beyond the snapshot's 1000
    for bad, code in ((0, -1130), (-5, -1100)):
        status, body = get_depth(ex.rest_url, "ETHUSDT", bad)
        assert (status, body["code"]) == (400, code)
    assert get_depth(ex.rest_url, "DOGEUSDT", 5)[1]["code"] == -1121


def test_depth_is_served_while_clients_stream(replay_exchange_factory: ReplayExchangeFactory) -> None:
    """REST answers do not wait for the tape, nor the tape for them (a thread keeps asking)."""
    path = real_data_file("btcusdt_20240808.gz")
    ex = replay_exchange_factory(replay_files=(str(path),), speed=200.0, start_on_subscribe=False)
    seen: list[int] = []

    def ask() -> None:
        while not ex.stats.finished and len(seen) < 50:
            status, body = get_depth(ex.rest_url, "BTCUSDT", 5)
            if status == 200:
                seen.append(body["lastUpdateId"])

    worker = threading.Thread(target=ask)
    worker.start()
    worker.join(TIMEOUT)
    assert seen == sorted(seen)  # the book only moves forward


def test_recorded_diffs_follow_the_clock_mode_and_the_time_unit(
    replay_exchange_factory: ReplayExchangeFactory,
) -> None:
    path = real_data_file("btcusdt_20240808.gz")

    async def first_diff(ws_url: str, query: str) -> dict[str, Any]:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(f"{ws_url}/ws/btcusdt@depth@100ms{query}") as ws,
        ):
            return json.loads((await asyncio.wait_for(ws.receive(), TIMEOUT)).data)  # type: ignore[no-any-return]

    live = replay_exchange_factory(replay_files=(str(path),), speed=20.0)
    before_us = time.time_ns() // 1000
    diff = asyncio.run(first_diff(live.ws_url, "?timeUnit=MICROSECOND"))
    assert before_us <= diff["E"] <= time.time_ns() // 1000  # re-stamped now, in µs
    original = replay_exchange_factory(replay_files=(str(path),), speed=20.0, clock="original")
    diff = asyncio.run(first_diff(original.ws_url, ""))
    assert (diff["E"], diff["U"]) == (1723161255208, 50093239189)  # the recording's first diff, as sent
