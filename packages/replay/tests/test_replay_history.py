"""The REST trade history is bounded: by count and by wall time, trimmed by chunk, counted, and
visible in ``/replay/v1/status`` and ``/metrics``."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import aiohttp
import pytest

from cryptopipe.replay.history import HistoryBounds, SymbolHistory, usage
from cryptopipe.replay.rest_status import METRICS_PATH, STATUS_PATH
from cryptopipe.replay.testing import ReplayExchangeFactory
from cryptopipe.schemas.binance import AggTradeEvent, TradeEvent


def _agg(i: int) -> AggTradeEvent:
    return AggTradeEvent(E=i, s="BTCUSDT", a=i, p=Decimal("1"), q=Decimal("2"), f=i, l=i, T=i * 10, m=False)


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_count_bound_keeps_the_newest_and_counts_what_went() -> None:
    history = SymbolHistory(HistoryBounds(limit=100, seconds=1e9, chunk=64))
    for i in range(1000):
        history.add_agg(_agg(i))
    kept = [a.a for a in history.aggs]
    assert kept == list(range(kept[0], 1000))  # the newest, contiguous
    assert 100 <= len(kept) <= 100 + 64  # over the limit by less than one chunk
    assert history.trimmed() == {"age": 0, "count": 1000 - len(kept)}
    assert len(history._agg_retention.marks) <= 100 // 64 + 1  # marks of trimmed entries go too
    # the indexes trimmed with it: a fromId query still bisects correctly
    assert [a.a for a in history.query(from_id=990, start_us=None, end_us=None, limit=5)] == [
        990,
        991,
        992,
        993,
        994,
    ]
    assert [a.a for a in history.query(from_id=None, start_us=9950, end_us=9970, limit=50)] == [995, 996, 997]


def test_age_bound_lets_go_of_chunks_played_before_it() -> None:
    clock = _Clock()
    history = SymbolHistory(HistoryBounds(limit=10**9, seconds=10.0, chunk=50), clock)
    for i in range(500):  # one trade per 0.1 s: 50 s of play
        clock.now = i * 0.1
        history.add_agg(_agg(i))
    kept = [a.a for a in history.aggs]
    assert kept[-1] == 499
    played_at = [i * 0.1 for i in kept]
    assert clock.now - played_at[0] <= 10.0 + 5.0  # within the bound plus one chunk of play
    assert clock.now - played_at[0] >= 10.0 - 5.0  # and not trimmed far beyond it
    assert history.trimmed()["age"] == 500 - len(kept)
    assert history.trimmed()["count"] == 0


def test_trades_are_bounded_like_aggtrades_and_usage_sums_both() -> None:
    bounds = HistoryBounds(limit=10, seconds=1e9, chunk=8)
    histories = {"BTCUSDT": SymbolHistory(bounds), "ETHUSDT": SymbolHistory(bounds)}
    for i in range(40):
        histories["BTCUSDT"].add_trade(
            TradeEvent(E=i, s="BTCUSDT", t=i, p=Decimal("1"), q=Decimal("1"), T=i, m=True)
        )
        histories["ETHUSDT"].add_agg(_agg(i))
    used = usage(histories)
    assert used.entries == len(histories["BTCUSDT"].trades) + len(histories["ETHUSDT"].aggs)
    assert used.entries <= 2 * (10 + 8)
    assert used.bytes_estimate == used.entries * 450
    assert used.trimmed["count"] == 80 - used.entries


@pytest.mark.parametrize("limit", [1000])
def test_a_running_exchange_reports_its_bounded_history(
    replay_exchange_factory: ReplayExchangeFactory, limit: int
) -> None:
    ex = replay_exchange_factory(
        symbols=("BTCUSDT",),
        rate=5000.0,
        seed=1,
        count=10_000,
        speed="max",
        start_on_subscribe=False,
        history_limit=limit,
    )
    assert ex.wait_finished(30)
    kept = ex.history("BTCUSDT")
    assert kept[-1].a - kept[0].a + 1 == len(kept)
    assert limit <= len(kept) < limit + 4096

    async def fetch() -> tuple[dict[str, object], str]:
        async with aiohttp.ClientSession() as session:
            async with session.get(ex.rest_url + STATUS_PATH) as response:
                status = await response.json()
            async with session.get(ex.rest_url + METRICS_PATH) as response:
                return status, await response.text()

    status, metrics = asyncio.run(fetch())
    history = status["history"]
    assert isinstance(history, dict)
    entries = len(kept) + len(ex.history("BTCUSDT", "trade"))  # synthetic: a trade and its aggTrade
    assert history["trades"] == entries
    assert history["trimmed"] == {"age": 0, "count": 20_000 - entries}
    assert history["limit_per_symbol"] == limit
    assert f"cryptopipe_replay_history_trades {float(entries)}" in metrics
    assert f'cryptopipe_replay_history_trimmed_total{{reason="count"}} {float(20_000 - entries)}' in metrics
