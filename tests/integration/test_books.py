"""Order books through the whole pipeline, as `cryptopipe up --depth 100ms` runs them: the books
balance, every book event is accounted for, the live bookTicker check never disagrees, and the
book in Redis equals the book rebuilt from Kafka alone at the same update id."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis

from cryptopipe.measure.bench_books import books_exact
from cryptopipe.replay.testing import real_data_file
from cryptopipe.schemas import KafkaSettings, RedisSettings

pytestmark = pytest.mark.slow

_QUIET = ["--no-alerting", "--no-dashboard", "--no-prometheus", "--metrics-base-port", "0"]


def _up(args: list[str], env: dict[str, str], summary: Path) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "cryptopipe.cli", "up", *args, *_QUIET, "--summary-json", str(summary)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "Traceback" not in result.stderr
    return dict(json.loads(summary.read_text()))


def _books_balance(summary: dict[str, Any]) -> None:
    books = summary["reconciliation"]
    assert books["balanced"] is True
    updates = books["book-updates"]
    assert updates["published"] > 0
    assert updates["unwritten"] == updates["surplus"] == 0
    ingest = books["ingest"]
    taken = ingest["book_events"]
    accounted = (
        ingest["book_events_applied"]
        + ingest["book_events_skipped"]
        + ingest["book_events_in_resync_gap"]
        + ingest["book_events_buffered"]
    )
    assert taken == accounted > 0  # every event: applied, older than its snapshot, or in a counted gap
    assert ingest["book_records_lost"] == 0
    assert summary["book_ticker_mismatches"] == 0


def _recorded() -> list[str]:
    files = [real_data_file(f"{s}_20240808.gz") for s in ("btcusdt", "ethusdt")]
    return [*(a for f in files for a in ("--replay-file", str(f))), "--speed", "20", "--run-for", "20"]


def _synthetic() -> list[str]:
    return ["--symbols", "btcusdt,ethusdt", "--rate", "200", "--seed", "5", "--run-for", "15"]


@pytest.mark.parametrize(
    ("flags", "recorded"), [(_recorded, True), (_synthetic, False)], ids=["recorded", "synthetic"]
)
def test_books_through_up_are_exact(
    flags: Any,
    recorded: bool,
    tmp_path: Path,
    kafka_settings: KafkaSettings,
    redis_settings: RedisSettings,
    redis_client: redis.Redis,  # deletes this test's keys afterwards
    pipeline_env: Any,
) -> None:
    args = ["--source", "replay", *flags(), "--depth", "100ms"]
    summary = _up(args, pipeline_env(kafka_settings, redis_settings), tmp_path / "summary.json")
    _books_balance(summary)
    if recorded:
        assert summary["book_ticker_checks"] > 100  # hundreds of recorded bookTickers met the book
        assert summary["book_resyncs"] == 0  # the recording has no gap
    else:
        assert summary["book_ticker_checks"] > 0
    # The top of every book in Redis is the book rebuilt from Kafka alone at its update id.
    exact, checked, _ = books_exact(
        kafka_settings, redis_settings.url.get_secret_value(), redis_settings.key_prefix
    )
    assert exact
    assert checked == 2
