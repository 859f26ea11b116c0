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

from cryptopipe.replay.testing import real_data_file
from cryptopipe.schemas import KafkaSettings, RedisSettings
from cryptopipe.schemas.topics import BOOK_SNAPSHOTS, BOOK_UPDATES
from cryptopipe.store import BookStore
from cryptopipe.store.book_rebuild import rebuild_book

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


def _redis_equals_kafka(kafka: KafkaSettings, client: redis.Redis, prefix: str, symbol: str) -> None:
    """The top of the book in Redis is the book rebuilt from Kafka alone at its update id."""
    view = BookStore(client, prefix).book(symbol)
    assert view is not None, f"no {symbol} book in Redis"
    assert view.best_bid is not None
    assert view.best_ask is not None
    assert view.best_bid[0] < view.best_ask[0]  # never crossed
    rebuilt = rebuild_book(
        kafka,
        symbol,
        updates_topic=BOOK_UPDATES.with_prefix(kafka.topic_prefix).name,
        snapshots_topic=BOOK_SNAPSHOTS.with_prefix(kafka.topic_prefix).name,
        until_update_id=view.update_id,
    )
    assert rebuilt.book is not None
    assert rebuilt.book.update_id == view.update_id
    top = rebuilt.book.top(len(view.bids))
    assert (tuple(top.bids), tuple(top.asks)) == (view.bids, view.asks)


def test_recorded_books_through_up_are_exact(
    tmp_path: Path,
    kafka_settings: KafkaSettings,
    redis_settings: RedisSettings,
    redis_client: redis.Redis,
    pipeline_env: Any,
) -> None:
    files = [real_data_file(f"{s}_20240808.gz") for s in ("btcusdt", "ethusdt")]
    args = ["--source", "replay", *(a for f in files for a in ("--replay-file", str(f)))]
    args += ["--speed", "20", "--depth", "100ms", "--run-for", "20"]
    summary = _up(args, pipeline_env(kafka_settings, redis_settings), tmp_path / "summary.json")
    _books_balance(summary)
    assert summary["book_ticker_checks"] > 100  # hundreds of recorded bookTickers met the book
    assert summary["book_resyncs"] == 0  # the recording has no gap
    for symbol in ("BTCUSDT", "ETHUSDT"):
        _redis_equals_kafka(kafka_settings, redis_client, redis_settings.key_prefix, symbol)


def test_synthetic_books_through_up_are_exact(
    tmp_path: Path,
    kafka_settings: KafkaSettings,
    redis_settings: RedisSettings,
    redis_client: redis.Redis,
    pipeline_env: Any,
) -> None:
    args = ["--source", "replay", "--symbols", "btcusdt,ethusdt", "--rate", "200", "--seed", "5"]
    args += ["--depth", "100ms", "--run-for", "15"]
    summary = _up(args, pipeline_env(kafka_settings, redis_settings), tmp_path / "summary.json")
    _books_balance(summary)
    assert summary["book_ticker_checks"] > 0
    for symbol in ("BTCUSDT", "ETHUSDT"):
        _redis_equals_kafka(kafka_settings, redis_client, redis_settings.key_prefix, symbol)
