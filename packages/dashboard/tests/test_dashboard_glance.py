"""The page a trader reads at a glance, in a real headless browser, on the real Binance recordings.

Two recordings (BTCUSDT and ETHUSDT, 2024-08-08, about 6 minutes of trades each) are written to
Redis by the store's own sink before any page is opened (the server keeps the history itself),
re-stamped to end now as the replay exchange's live clock does, about 40 times faster than
recorded. Screenshots land in ``artifacts/``.
"""

from __future__ import annotations

import gzip
import json
import re
import threading
import time
from contextlib import ExitStack
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import Gauge, Histogram

from cryptopipe.dashboard.data import CLOCK_OFFSET, SPARK_BATCH
from cryptopipe.dashboard.testing import (
    body_text,
    clipped,
    feed_text,
    screenshot,
    start_dashboard,
    width_share,
)
from cryptopipe.infra.testing import eventually
from cryptopipe.observability import LATENCY_BUCKETS
from cryptopipe.replay.testing import real_data_file
from cryptopipe.schemas import RedisSettings, Trade
from cryptopipe.store.prices import PriceSink
from cryptopipe.store.sink import connect_redis

from .conftest import Market, ServiceEndpoint, now_us

pytestmark = pytest.mark.slow

RECORDINGS = ("btcusdt_20240808.gz", "ethusdt_20240808.gz")


def recorded_trades(path: Path) -> list[tuple[int, int, Decimal, Decimal, bool]]:
    """``(trade_time_ms, trade_id, price, quantity, buyer_is_maker)`` of every @trade frame."""
    out = []
    with gzip.open(path, "rt") as lines:
        for line in lines:
            _, _, frame = line.partition(" ")
            if "@trade" not in frame[:60]:
                continue
            data = json.loads(frame)["data"]
            out.append((data["T"], data["t"], Decimal(data["p"]), Decimal(data["q"]), data["m"]))
    return out


class Tape(threading.Thread):
    """Writes the recordings to Redis in time order through the prices sink, ``batches`` slices
    ``pause_s`` apart; trade times are shifted so the last trade lands at the start time."""

    def __init__(self, settings: RedisSettings, symbols: dict[str, Path], batches: int, pause_s: float):
        super().__init__(name="tape", daemon=True)
        self.client = connect_redis(settings.url.get_secret_value())
        self.sink = PriceSink(self.client, key_prefix=settings.key_prefix)
        self.trades = sorted(
            (row[0], symbol, *row[1:]) for symbol, path in symbols.items() for row in recorded_trades(path)
        )
        self.batches, self.pause_s = batches, pause_s
        self.done = threading.Event()

    def run(self) -> None:
        shift_us = now_us() - self.trades[-1][0] * 1000
        size = -(-len(self.trades) // self.batches)
        for start in range(0, len(self.trades), size):
            received = now_us()
            batch = [
                Trade(
                    symbol=symbol,
                    trade_id=trade_id,
                    price=price,
                    quantity=quantity,
                    buyer_is_maker=maker,
                    trade_time_us=time_ms * 1000 + shift_us,
                    event_time_us=time_ms * 1000 + shift_us,
                    receive_time_us=received,
                )
                for time_ms, symbol, trade_id, price, quantity, maker in self.trades[start : start + size]
            ]
            self.sink.write(batch)
            time.sleep(self.pause_s)
        self.done.set()


def spark_and_clock(endpoint: ServiceEndpoint) -> None:
    """The Spark job's micro-batch times and ingest's clock offset, as those services export them."""
    batch = Histogram(SPARK_BATCH, "batch", registry=endpoint.registry, buckets=LATENCY_BUCKETS)
    for seconds in (0.36, 0.41, 0.52, 0.695, 0.69, 0.7):
        batch.observe(seconds)
    offset = Gauge(CLOCK_OFFSET, "offset", ["reference"], registry=endpoint.registry)
    offset.labels(reference="binance").set(-1.2703)


def changes_of(page: Any, symbol: str) -> str:
    """The card's line of changes (``1m ▲ +0.012% · 5m ...``)."""
    card = page.locator("[data-testid=stColumn]").filter(
        has=page.get_by_test_id("stMetricLabel").filter(has_text=re.compile(rf"^{symbol}( · STALE)?$"))
    )
    lines = [line for line in str(card.last.inner_text()).splitlines() if line.startswith("1m ")]
    return lines[0] if lines else ""


def test_the_recordings_read_at_a_glance(
    page: Any, market: Market, metrics_url: str, service_metrics: ServiceEndpoint
) -> None:
    spark_and_clock(service_metrics)
    files = {name[:7].upper(): real_data_file(name) for name in RECORDINGS}
    with ExitStack() as stack:
        url, _ = start_dashboard(
            stack,
            {
                "REDIS_URL": market.settings.url.get_secret_value(),
                "REDIS_KEY_PREFIX": market.settings.key_prefix,
                "DASHBOARD_SYMBOLS": ",".join(files),
                "DASHBOARD_REFRESH_SECONDS": "0.5",
                "DASHBOARD_METRICS_URLS": f"{metrics_url},{service_metrics.url}",
                "PROMETHEUS_URL": "",
                "DASHBOARD_SOURCE": "replay",
                "DASHBOARD_REPLAY_CLOCK": "live",
                "DASHBOARD_REPLAY_DATA": ", ".join(RECORDINGS),
                "CRYPTOPIPE_RUNTIME_INFO": json.dumps({"broker": "none (Redis written by the test)"}),
            },
        )
        # No page is open while the tape plays: the server keeps the history by itself.
        tape = Tape(market.settings, files, batches=60, pause_s=0.25)
        stack.callback(tape.client.close)
        tape.start()
        tape.done.wait(120)
        assert tape.done.is_set(), "the tape did not finish"
        page.goto(url)
        a_fall = market.alert("BTCUSDT", "BUY", -0.0031, open_="61837.63", close="61645.9")
        market.alert("ETHUSDT", "SELL", 0.0042, open_="2650.1", close="2661.23", rule="pct_5m")

        for symbol in files:
            eventually(
                lambda s=symbol: re.fullmatch(
                    r"1m [▲▼■] [-+]\d+\.\d{3}% · 5m [▲▼■] [-+]\d+\.\d{3}% · 1h — \(5 min kept\)",
                    changes_of(page, s),
                ),
                timeout=30,
                message=f"{symbol}: no 1m and 5m changes over the recording ({changes_of(page, symbol)!r})",
            )
        eventually(lambda: "▼ -0.310%" in feed_text(page), timeout=30, message="no direction mark")
        text = body_text(page)
        assert "kept by this dashboard since it started at" in text
        assert "Replay of btcusdt_20240808.gz, ethusdt_20240808.gz" in text
        assert "re-stamped to now" in text
        assert "Clock skew (replay exchange - local)" in text
        assert "-1,270.3 ms" in text
        assert "binance" not in text.lower()
        assert a_fall.side == "BUY"

        for width in (1400, 1100):
            page.set_viewport_size({"width": width, "height": 1000})
            page.wait_for_timeout(500)
            assert clipped(page) == [], f"tiles cut off at {width} px"
            for symbol in files:
                assert width_share(page, symbol) > 0.4, f"{symbol}'s card is narrow at {width} px"
        shot = screenshot(page, "dashboard-replay-glance.png")
        assert shot.stat().st_size > 10_000
