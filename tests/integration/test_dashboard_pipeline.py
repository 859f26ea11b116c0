"""The whole pipeline in a real browser: `cryptopipe up` on the replay exchange, then the page.

Prices for every symbol appear and change (at least one card: see the note on issue #4), a
forced threshold crossing (BTC rises 2 % within a minute; the rule fires early, inside the open
window) reaches the alert feed through Spark, Kafka and Redis, and the health panel shows
numbers read from the running services.
"""

from __future__ import annotations

import csv
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from cryptopipe.dashboard.testing import body_text, card_value, feed_text, screenshot
from cryptopipe.infra import free_port
from cryptopipe.infra.testing import eventually

pytestmark = pytest.mark.slow


def _trades(path: Path, first_id: int, n: int, price: Decimal, rise: Decimal) -> None:
    """aggTrades 50 ms apart whose price drifts by ``rise`` (a fraction) over the file."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        for i in range(n):
            p = price * (1 + rise * i / (n - 1)) + Decimal(i % 5) / 100
            writer.writerow(
                [
                    first_id + i,
                    f"{p:.8f}",
                    "0.01000000",
                    first_id + i,
                    first_id + i,
                    1723161255000 + i * 50,
                    i % 2 == 0,
                    True,
                ]
            )


def test_pipeline_in_the_browser(tmp_path: Path, page: Any, run_up: Any) -> None:
    _trades(tmp_path / "BTCUSDT-aggTrades-2024-08-08.csv", 1000, 1200, Decimal("61837"), Decimal("0.02"))
    _trades(tmp_path / "ETHUSDT-aggTrades-2024-08-08.csv", 5000, 1200, Decimal("2550"), Decimal("0"))
    port = free_port()
    with run_up(
        "--source",
        "replay",
        "--replay-file",
        str(tmp_path / "BTCUSDT-aggTrades-2024-08-08.csv"),
        "--replay-file",
        str(tmp_path / "ETHUSDT-aggTrades-2024-08-08.csv"),
        "--clock",
        "live",
        "--speed",
        "0.5",
        "--rule",
        "1m:0.5%:early",
        "--loop",  # the market never runs dry, however long Spark takes to start on a busy machine
        "--dashboard-port",
        str(port),
    ) as up:
        lines = up.lines
        eventually(
            lambda: any("Ctrl-C stops cleanly" in line for line in lines),
            timeout=240,
            message="up did not start every service",
        )
        page.goto(f"http://127.0.0.1:{port}")
        first = eventually(
            lambda: (
                (prices := {s: card_value(page, s) for s in ("BTCUSDT", "ETHUSDT")})
                and all(prices.values())
                and prices
            ),
            timeout=60,
            message="no price for every symbol",
        )
        eventually(
            lambda: any(card_value(page, s) not in (None, first[s]) for s in first),
            timeout=120,
            message="prices did not change",
        )
        eventually(
            lambda: re.search(r"SELL", feed_text(page)) and "BTCUSDT" in feed_text(page),
            timeout=120,
            message="the forced alert never reached the feed",
        )
        eventually(
            lambda: re.search(r"E2E.*\d", body_text(page), re.S),
            timeout=60,
            message="no latency figures in the health panel",
        )
        shot = screenshot(page, "dashboard-pipeline.png")
        assert shot.stat().st_size > 0
        text = body_text(page)
        assert "tansu" in text.lower() or "kafka" in text.lower()  # which broker runs is shown
        assert up.interrupt() == 0, up.output[-4000:]
