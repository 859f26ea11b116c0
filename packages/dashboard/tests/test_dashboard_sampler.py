"""The server's history sampler keeps the price history from a real Redis with no page open."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cryptopipe.dashboard import sampler
from cryptopipe.dashboard.settings import DashboardSettings
from cryptopipe.infra.testing import eventually

from .conftest import Market, now_us


@pytest.fixture
def started(market: Market) -> Iterator[sampler.Sampler]:
    settings = DashboardSettings(
        symbols=("BTCUSDT",),
        refresh_seconds=0.05,
        history_points=5,  # Redis is read 5 trades at a time
    )
    running = sampler.start(settings, market.settings)
    assert running is not None
    yield running
    running.stop()


def test_the_history_is_kept_with_no_page_open(market: Market, started: sampler.Sampler) -> None:
    kept = sampler.running()
    assert kept is not None
    assert kept is started.history

    def last_price() -> float | None:
        points, _ = kept.add("BTCUSDT", [], full=False)
        return points[-1][1] if points else None

    start = now_us() - 40_000_000
    for second in range(40):
        market.trade("BTCUSDT", str(100 + second), trade_time_us=start + second * 1_000_000)
        if second % 4 == 3:  # four new trades, then wait for one read: the reads overlap
            eventually(
                lambda s=second: last_price() == 100 + s,
                timeout=10,
                message="the sampler never read the new trades",
            )
    points, gaps = kept.add("BTCUSDT", [], full=False)
    assert [price for _, price in points] == [float(100 + s) for s in range(40)]
    assert gaps == 0
    assert started.failed_reads == 0
    started.stop()
    assert sampler.running() is None  # a stopped sampler is not offered to the page


def test_no_redis_url_starts_no_sampler(market: Market) -> None:
    empty = market.settings.model_copy(update={"url": type(market.settings.url)("")})
    assert sampler.start(DashboardSettings(), empty) is None
