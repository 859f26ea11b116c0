"""`cryptopipe up` end to end: replay exchange -> ingest -> Kafka -> prices consumer -> Redis.

These run the real command in a child process, exactly as a user would, against a real
Kafka-protocol broker and a real Redis (the header of the pytest run says which broker ran).
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis

from cryptopipe.schemas import KafkaSettings, RedisSettings

from .conftest import replay_file_args

pytestmark = pytest.mark.slow


def _up(args: list[str], env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cryptopipe.cli", "up", "--metrics-base-port", "0", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass(frozen=True)
class UpRun:
    """What one `cryptopipe up` run left: its completed process and its --summary-json file."""

    result: subprocess.CompletedProcess[str]
    summary_path: Path

    def summary(self) -> dict[str, Any]:
        return dict(json.loads(self.summary_path.read_text()))


UpHere = Callable[[list[str]], UpRun]


@pytest.fixture
def up_here(
    tmp_path: Path, kafka_settings: KafkaSettings, redis_settings: RedisSettings, pipeline_env: Any
) -> UpHere:
    """``up_here(args) -> UpRun``: `up ARGS --summary-json PATH` on the session's broker and Redis,
    with this test's topic and key prefixes."""
    env = pipeline_env(kafka_settings, redis_settings)
    summary_path = tmp_path / "summary.json"

    def run(args: list[str]) -> UpRun:
        return UpRun(_up([*args, "--summary-json", str(summary_path)], env), summary_path)

    return run


def _write_agg_trades(
    path: Path, first_id: int, n: int, start_ms: int, price: Decimal, *, rise: Decimal = Decimal(0)
) -> list[tuple[int, Decimal, int]]:
    """A data.binance.vision aggTrades file (no header): aggId,price,qty,first,last,ts,maker,best.

    Prices wobble around ``price`` and drift up by ``rise`` (a fraction) over the n trades, 3 ms
    apart. A last trade 70 s later lets the watermark close the first trades' minute window.
    """
    rows = []
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        for i in range(n):
            agg_id = first_id + i
            p = price + Decimal(i % 7) / 100 + price * rise * i / (n - 1)
            ts = start_ms + i * 3 if i < n - 1 else start_ms + 70_000
            writer.writerow(
                [agg_id, f"{p:.8f}", "0.01000000", agg_id * 2, agg_id * 2 + 1, ts, i % 2 == 0, True]
            )
            rows.append((agg_id, Decimal(f"{p:.8f}"), ts))
    return rows


def test_replayed_trades_all_reach_redis(
    tmp_path: Path, redis_settings: RedisSettings, redis_client: redis.Redis, up_here: UpHere
) -> None:
    """N trades replayed -> exactly N published and written, latest = reference, lag back to 0;
    a forced 1 % rise inside one window -> exactly one final alert through Spark, Kafka and Redis."""
    n = 600
    # BTC rises 1 % inside one minute window (threshold 0.5 %): one final SELL alert. ETH stays flat.
    btc_file, eth_file = (tmp_path / f"{s}-aggTrades-2024-08-08.csv" for s in ("BTCUSDT", "ETHUSDT"))
    btc = _write_agg_trades(btc_file, 1000, n, 1723161255000, Decimal("61837"), rise=Decimal("0.01"))
    eth = _write_agg_trades(eth_file, 5000, n, 1723161255001, Decimal("2550"))
    args = ["--source", "replay", *replay_file_args(btc_file, eth_file)]
    args += ["--speed", "50", "--clock", "original", "--run-for", "12", "--history-cap", str(2 * n)]
    args += ["--rule", "1m:0.5%"]  # the seed's rule, which this data is made for (not the replay demo rules)
    run = up_here(args)
    result = run.result
    assert result.returncode == 0, result.stderr[-4000:]
    summary = run.summary()
    assert summary["trades_received"] == 2 * n
    assert summary["trades_published"] == 2 * n
    assert summary["prices_written"] == 2 * n
    assert summary["lost"] == 0
    assert summary["unwritten"] == 0
    books = summary["reconciliation"]
    assert books["balanced"] is True
    prices = books["prices"]
    assert {key: prices[key] for key in ("published", "consumed", "written", "unwritten", "surplus")} == {
        "published": 2 * n,
        "consumed": 2 * n,
        "written": 2 * n,
        "unwritten": 0,
        "surplus": 0,
    }
    # The consumer's own stats, whole: nothing stale, dead-lettered or retried; batches were written.
    assert (prices["stale"], prices["dead_lettered"], prices["redis_failures"]) == (0, 0, 0)
    assert 1 <= prices["batches"] <= 2 * n
    # One alert in Redis; published once by Spark and, when the express lane saw the trade that
    # decided it live, once more by the lane (that copy is stale in the alerts consumer).
    alerts = books["alerts"]
    assert alerts["written"] == 1
    assert alerts["published"] == alerts["written"] + alerts["stale"] <= 2
    assert alerts["unwritten"] == alerts["surplus"] == 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"cryptopipe up: books balance: {2 * n} trades received"), last
    assert summary["dead_lettered"] == 0
    assert summary["consumer_lag_final"] == 0
    assert summary["alerting_unread"] == 0  # Spark read every trade before it was stopped
    assert summary["symbols"] == ["btcusdt", "ethusdt"]
    assert summary["clock_offset_ms"] is not None
    assert abs(summary["clock_offset_ms"]) < 50  # the replay exchange shares this machine's clock
    for figure in (
        "system_latency_ms",
        "e2e_latency_ms",
        "network_latency_ms",
        "network_latency_corrected_ms",
    ):
        assert all(summary[figure][p] is not None for p in ("p50", "p95", "p99")), figure
        assert summary[figure]["p50"] <= summary[figure]["p99"]
    window_rows = [r for r in btc if r[2] < 1723161255000 + 60_000]
    window_start_us = (1723161255000 // 60_000) * 60_000 * 1000
    assert summary["alerts_raised"] == 1, result.stderr[-8000:]
    assert summary["alerts"] == [
        {
            "rule": summary["alerts"][0]["rule"],
            "symbol": "BTCUSDT",
            "kind": "final",
            "side": "SELL",
            "window_start_us": window_start_us,
            "window_end_us": window_start_us + 60_000_000,
            "open": summary["alerts"][0]["open"],
            "close": summary["alerts"][0]["close"],
            "pct_change": pytest.approx(float((window_rows[-1][1] - window_rows[0][1]) / window_rows[0][1])),
        }
    ]
    assert Decimal(summary["alerts"][0]["open"]) == window_rows[0][1]
    assert Decimal(summary["alerts"][0]["close"]) == window_rows[-1][1]
    prefix = redis_settings.key_prefix
    for symbol, rows in (("BTCUSDT", btc), ("ETHUSDT", eth)):
        assert redis_client.zcard(f"{prefix}history:{symbol}") == n
        latest = redis_client.hgetall(f"{prefix}price:{symbol}")
        ref_id, ref_price, _ = max(rows, key=lambda r: (r[2], r[0]))
        assert int(latest[b"trade_id"]) == ref_id
        assert Decimal(latest[b"price"].decode()) == ref_price


def test_books_that_do_not_balance_exit_3_with_one_line(
    redis_settings: RedisSettings, redis_client: redis.Redis, up_here: UpHere
) -> None:
    """A poisoned key (a string where BTCUSDT's latest-price hash goes) makes every prices write
    fail, so the consumer retries, commits nothing and writes nothing: the drain gives up, the
    books show every published trade unwritten, `lost` says so, and `up` exits 3 with one line."""
    redis_client.set(f"{redis_settings.key_prefix}price:BTCUSDT", b"not a hash")
    args = ["--source", "replay", "--symbols", "btcusdt", "--rate", "50", "--seed", "3", "--run-for", "5"]
    args += ["--no-alerting", "--no-dashboard", "--no-prometheus", "--drain-timeout", "5"]
    run = up_here(args)
    result = run.result
    assert result.returncode == 3, result.stderr[-4000:]
    assert "prices-consumer did not catch up within 5 s; stopping anyway" in result.stderr
    summary = run.summary()
    published = summary["trades_published"]
    assert published > 0
    assert summary["prices_written"] == 0
    assert summary["unwritten"] == published
    assert summary["lost"] == published
    assert summary["reconciliation"]["balanced"] is False
    assert summary["reconciliation"]["prices"]["unwritten"] == published
    lines = result.stderr.strip().splitlines()
    expected = (
        f"cryptopipe up: BOOKS DO NOT BALANCE: {published} of {published} published trades were never "
        "written to Redis (prices topic)"
    )
    assert lines[-1] == expected
    assert sum("BOOKS DO NOT BALANCE" in line for line in lines) == 1
    assert "Traceback" not in result.stderr


def test_unreachable_binance_is_one_clear_line(tmp_path: Path, clean_env: Any) -> None:
    result = _up(["--binance-rest-url", "http://127.0.0.1:9", "--run-for", "1"], clean_env(), timeout=60)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "unreachable" in lines[0]
    assert "--source replay" in lines[0]


def test_bad_configuration_names_the_variable_and_hides_the_secret(clean_env: Any) -> None:
    env = clean_env() | {"REDIS_URL": "http://:hunter2@127.0.0.1:6379"}
    result = _up(["--source", "replay", "--run-for", "1"], env, timeout=60)
    assert result.returncode == 2
    assert "REDIS_URL" in result.stderr
    assert "hunter2" not in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "env", "names"),
    [
        ([], {"KAFKA_BOOTSTRAP_SERVERS": "nonsense:1"}, "KAFKA_BOOTSTRAP_SERVERS"),
        ([], {"REDIS_URL": "redis://127.0.0.1:1/0"}, "REDIS_URL"),
        (["--replay-file", "nope.gz"], {}, "--replay-file nope.gz"),
        (["--replay-file", "README.md"], {}, "--replay-file README.md"),
        (["--run-for", "-1"], {}, "--run-for"),
        (["--symbols", ""], {}, "--symbols"),
        (["--threshold", "abc", "--no-alerting"], {}, "--threshold"),
        (["--rate", "-5"], {}, "--rate"),
        (["--speed", "fast"], {}, "--speed"),
    ],
)
def test_bad_settings_are_one_line_and_exit_2_before_any_server_starts(
    args: list[str], env: dict[str, str], names: str, clean_env: Any
) -> None:
    argv = ["--source", "replay", "--run-for", "10", *args]
    result = _up(argv, clean_env() | env, timeout=60)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr  # no librdkafka line, no traceback, no server started
    assert lines[0].startswith("cryptopipe up: "), lines[0]
    assert names in lines[0], lines[0]


def test_a_tape_that_ends_stops_up_with_exit_on_finish(
    tmp_path: Path,
    redis_client: redis.Redis,  # deletes this test's keys afterwards
    up_here: UpHere,
) -> None:
    """The tape plays to a pipeline that is up, its end is said once (not as a connection fault),
    and --exit-on-finish drains and stops there, long before --run-for."""
    n = 300
    btc_file = tmp_path / "BTCUSDT-aggTrades-2024-08-08.csv"
    _write_agg_trades(btc_file, 1000, n, 1723161255000, Decimal("61837"))
    args = ["--source", "replay", *replay_file_args(btc_file), "--speed", "max", "--exit-on-finish"]
    args += ["--run-for", "600", "--no-alerting", "--no-dashboard", "--no-prometheus"]
    run = up_here(args)
    result = run.result
    assert result.returncode == 0, result.stderr[-4000:]
    summary = run.summary()
    assert summary["trades_received"] == summary["prices_written"] == n  # every trade of the file
    assert summary["run_seconds"] < 600
    lines = result.stderr.splitlines()
    assert sum("the tape has finished" in line for line in lines) == 1, result.stderr[-4000:]
    assert not any("reconnect" in line for line in lines), result.stderr[-4000:]


def test_ingest_shards_and_consumers_scale_out_with_balanced_books(
    redis_client: redis.Redis,  # deletes this test's keys afterwards
    up_here: UpHere,
) -> None:
    """Two ingest shards on disjoint symbols, two prices consumers in one group and two books
    consumers in another: the books are the sums and balance, and each consumer wrote its
    partitions' share (4 symbols -> partitions 2, 1, 3, 0, so each member of a group owns symbols)."""
    args = ["--source", "replay", "--symbols", "btcusdt,ethusdt,bnbusdt,xrpusdt", "--rate", "2000"]
    args += ["--run-for", "15", "--ingest-shards", "2", "--consumers", "2"]
    args += ["--depth", "100ms", "--book-consumers", "2"]
    args += ["--no-alerting", "--no-dashboard", "--no-prometheus"]
    run = up_here(args)
    result = run.result
    assert result.returncode == 0, result.stderr[-4000:]
    summary = run.summary()
    assert (summary["ingest_shards"], summary["consumers"], summary["book_consumers"]) == (2, 2, 2)
    # Both consumers' lag, as the progress lines saw it; no Spark job in this run.
    assert isinstance(summary["consumer_lag_max"], float)
    assert summary["alerting_lag_max"] is None
    assert summary["alerting_unread"] is None
    books = summary["reconciliation"]
    assert books["balanced"] is True
    assert summary["unwritten"] == 0
    shards = books["ingest_by_shard"]
    assert set(shards) == {"ingest", "ingest-2"}
    assert all(shard["published"] > 0 for shard in shards.values())
    published = sum(shard["published"] for shard in shards.values())
    assert books["prices"]["published"] == summary["trades_published"] == published > 0
    assert books["prices"]["written"] + books["prices"]["stale"] == published
    consumers = books["prices_by_consumer"]
    assert set(consumers) == {"prices-consumer", "prices-consumer-2"}
    assert all(consumer["written"] > 0 for consumer in consumers.values()), consumers
    assert sum(c["written"] + c["stale"] for c in consumers.values()) == published
    book_updates = books["book-updates"]["published"]
    assert book_updates > 0
    readers = books["book-updates_by_consumer"]
    assert set(readers) == {"books-consumer", "books-consumer-2"}
    assert all(reader["written"] > 0 for reader in readers.values()), readers
    assert sum(r["written"] + r["dead_lettered"] for r in readers.values()) == book_updates
    assert "Traceback" not in result.stderr
