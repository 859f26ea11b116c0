"""The whole pipeline, once, as a new user runs it: `cryptopipe up` with nothing configured starts
its own broker, Redis, Spark job, Prometheus and dashboard on the replay exchange, and then:

- **the page** (a real browser): prices for every symbol appear and both cards change; a forced
  threshold crossing (BTC moves 2 % within a minute; the rule fires early, inside the open
  window) reaches the alert feed through Spark, Kafka and Redis; the health panel shows numbers
  read from the running services. On a failure the page is saved as a screenshot
  (``dashboard-pipeline-failure.png`` in the artifacts directory) and its text is in the message.
- **Prometheus**, started by `up`, scrapes every component, answers a PromQL p99, and every
  metric the dashboards and rules query is exported by a running service.
- **Ctrl-C** exits 0 without a traceback, leaves no child process behind, and the summary's books
  balance (every published trade written; the alert job ran on the native Kafka connector).

One `up` serves all three (each used to start its own, and Spark's start-up dominated them).

Why the ETH card once seemed to stop changing: its test prices cycled through five values, one
trade every 100 ms (50 ms apart, played at half speed), so they repeated every 500 ms, and the
page redraws every 1 s (DASHBOARD_REFRESH_SECONDS): every redraw caught the same phase and showed
the same price. The pipeline was fine (the value in Redis changed); the samples aliased. Both
symbols now drift, so every redraw has a new price to show.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import stat
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil
import pytest

from cryptopipe.dashboard.testing import body_text, card_value, feed_text, metric_value, screenshot
from cryptopipe.infra import free_port
from cryptopipe.infra.testing import eventually
from cryptopipe.observability import Scrape
from cryptopipe.observability.drift import assert_exported, exposed_names, queried_metrics
from cryptopipe.observability.prometheus import api_get, instant_query, target_health

from .conftest import replay_file_args

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


def _redis_logins(processes: list[psutil.Process]) -> dict[str, str | None]:
    """The Redis user each service process was given (``REDIS_URL``'s, by its command), checking
    that its password is only in its ``REDIS_PASSWORD_FILE`` (0600), never in its environment."""
    logins: dict[str, str | None] = {}
    for process in processes:
        try:
            argv, env = process.cmdline(), process.environ()
        except psutil.Error:
            continue
        if "cryptopipe.cli" not in argv or "REDIS_URL" not in env:
            continue
        url = urlsplit(env["REDIS_URL"])
        assert url.password is None, argv
        assert stat.S_IMODE(os.stat(env["REDIS_PASSWORD_FILE"]).st_mode) == 0o600
        logins[argv[argv.index("cryptopipe.cli") + 1]] = url.username
    return logins


@pytest.mark.timeout(600)
def test_the_whole_pipeline_on_its_own_servers(
    tmp_path: Path, page: Any, run_up: Any, require_binary: Any
) -> None:
    require_binary("prometheus")
    summary_path = tmp_path / "summary.json"
    btc_file, eth_file = (tmp_path / f"{s}-aggTrades-2024-08-08.csv" for s in ("BTCUSDT", "ETHUSDT"))
    _trades(btc_file, 1000, 1200, Decimal("61837"), Decimal("0.02"))
    # ETH drifts by 0.1 % over the file: below the 0.5 % rule, so only BTC alerts.
    _trades(eth_file, 5000, 1200, Decimal("2550"), Decimal("0.001"))
    port = free_port()
    with run_up(
        "--source",
        "replay",
        *replay_file_args(btc_file, eth_file),
        "--clock",
        "live",
        "--speed",
        "0.5",
        "--rule",
        "1m:0.5%:early",
        "--loop",  # the market never runs dry, however long Spark takes to start on a busy machine
        "--dashboard-port",
        str(port),
        "--summary-json",
        str(summary_path),
    ) as up:
        lines = up.lines
        eventually(
            lambda: any("Ctrl-C stops cleanly" in line for line in lines),
            timeout=240,
            message="up did not start every service",
        )
        children = psutil.Process(up.proc.pid).children(recursive=True)
        assert len(children) >= 3  # broker, redis, replay exchange, ingest, consumers, ...
        assert _redis_logins(children) == {
            "prices-consumer": "prices-consumer",
            "alerts-consumer": "alerts-consumer",
            "dashboard": "dashboard",
        }
        try:
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
                lambda: all(card_value(page, s) not in (None, first[s]) for s in first),
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
            eventually(
                lambda: re.fullmatch(r"[\d,]+ records", metric_value(page, "Spark query lag") or ""),
                timeout=60,
                message="no Spark query lag in the health panel",
            )
        except AssertionError as exc:
            shot = screenshot(page, "dashboard-pipeline-failure.png")
            raise AssertionError(f"{exc}\npage saved as {shot}; its text:\n{body_text(page)[:3000]}") from exc
        shot = screenshot(page, "dashboard-pipeline.png")
        assert shot.stat().st_size > 0
        text = body_text(page)
        assert "tansu" in text.lower() or "kafka" in text.lower()  # which broker runs is shown
        _prometheus_scrapes_every_component(up.lines)
        returncode = up.interrupt()
    output = up.output
    assert returncode == 0, output[-4000:]
    # Quiet by default: the terminal shows up's own lines and warnings; the log file has it all.
    log = up.log_text
    assert "[prices-consumer]" in log, output[-4000:]
    assert " INFO " in log, output[-4000:]
    assert not re.search(r"^\[[\w-]+\] \S+ \S+ INFO ", output, re.M), output[-6000:]
    for text in (output, log):
        for sign in ("Traceback", "EOFError", "BrokenPipeError"):
            assert sign not in text, text[-6000:]
        # The drain waits for what it needs and no more: Spark read every trade, so it stops at once.
        assert "did not catch up" not in text, text[-6000:]
        # Nothing alarming that is not actionable: AQE is off on purpose (Spark warns regardless).
        assert "Disabling AQE" not in text, text[-6000:]
        assert "Coordinator load in progress" not in text, text[-6000:]
    # The progress lines say how far behind the Spark query is, once it runs.
    assert re.search(r"cryptopipe up: .* spark lag \d+ ", output), output[-6000:]
    summary = json.loads(summary_path.read_text())
    assert summary["broker"]
    assert summary["redis"]
    assert summary["alerting_source"] == "native", output[-4000:]
    assert summary["alerting_express"] is True
    assert summary["trades_published"] == summary["trades_received"] > 0
    assert summary["prices_written"] == summary["trades_published"], output[-6000:]
    assert summary["lost"] == 0
    assert summary["alerting_unread"] == 0  # Spark read every trade before it was stopped
    # The highest lags the progress lines saw: the consumers' and the Spark query's.
    assert isinstance(summary["consumer_lag_max"], float)
    assert isinstance(summary["alerting_lag_max"], float)
    assert summary["alerting_lag_max"] >= 0
    gone = eventually(
        lambda: not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE],
        timeout=15,
        message="child processes outlived cryptopipe up",
    )
    assert gone


def _prometheus_scrapes_every_component(lines: list[str]) -> None:
    url = eventually(
        lambda: next((m.group(1) for line in lines if (m := re.search(r"prometheus at (\S+)", line))), None),
        timeout=60,
        message="up did not start Prometheus",
    )
    health = eventually(
        lambda: (h := target_health(url)) and all(s == ["up"] for s in h.values()) and h,
        timeout=60,
        message="not every target is up",
    )
    assert {"ingest", "prices-consumer", "orchestrator", "replay-exchange"} <= set(health)
    # Every process's resident memory is exported: the replay exchange's by the orchestrator.
    rss = 'cryptopipe_process_resident_memory_bytes{component="replay-exchange"}'
    assert eventually(lambda: (r := instant_query(url, rss)) and r[0][1] > 0, timeout=60, message=rss)
    history = 'cryptopipe_replay_history_trades{job="replay-exchange"}'  # every service exports a 0
    assert eventually(lambda: (r := instant_query(url, history)) and r[0][1] > 0, timeout=60, message=history)

    def p99() -> float | None:
        result = instant_query(
            url, "histogram_quantile(0.99, sum by (le) (rate(cryptopipe_e2e_latency_seconds_bucket[1m])))"
        )
        return result[0][1] if result and math.isfinite(result[0][1]) else None

    assert eventually(p99, timeout=60, message="PromQL p99 returned no number") > 0
    scrape_urls = [t["scrapeUrl"] for t in api_get(url, "/api/v1/targets")["activeTargets"]]
    # This run keeps no order books (--depth off), so no books consumer runs: its metrics are
    # checked where books run (tests/integration/test_books.py).
    books_consumer = {name for name, entry in exposed_names().items() if entry.component == "books-consumer"}
    assert_exported(Scrape.from_urls(*scrape_urls), queried_metrics() - books_consumer)
