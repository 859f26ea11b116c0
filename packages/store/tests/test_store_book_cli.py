"""``cryptopipe book`` prints the book Redis holds (text and JSON), and says so in one line when there
is none; ``cryptopipe books-consumer``'s settings, and the service run until stopped."""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from cryptopipe import schemas
from cryptopipe.infra.testing import eventually, produce
from cryptopipe.runtime import Stop
from cryptopipe.schemas import (
    BOOK_UPDATES,
    DEAD_LETTERS,
    KafkaSettings,
    RedisSettings,
    encode_book,
    encode_key,
)
from cryptopipe.store import BookSink, BookStore
from cryptopipe.store.book_cli import main
from cryptopipe.store.cli import books_main, build_books_parser, run
from cryptopipe.store.settings import BooksConsumerSettings

from .test_store_book_support import SyntheticBook


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, redis_settings: RedisSettings) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith(("KAFKA_", "REDIS_", "BOOKS_CONSUMER_", "CRYPTOPIPE_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no .env file here
    monkeypatch.setenv("REDIS_URL", redis_settings.url.get_secret_value())
    monkeypatch.setenv("REDIS_KEY_PREFIX", redis_settings.key_prefix)
    return monkeypatch


@pytest.fixture
def book(redis_client: redis.Redis, redis_settings: RedisSettings) -> SyntheticBook:
    """BTCUSDT's book in Redis: a reset and three updates, 20 levels kept."""
    synthetic = SyntheticBook("BTCUSDT", seed=5)
    BookSink(redis_client, key_prefix=redis_settings.key_prefix).write(
        [synthetic.reset(), *(synthetic.update() for _ in range(3))]
    )
    return synthetic


def test_book_prints_the_touch_the_spread_and_the_levels(
    env: pytest.MonkeyPatch, book: SyntheticBook, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["btcusdt", "--levels", "3"]) == 0
    out = capsys.readouterr().out
    bids, asks = book.book.levels()
    (bid, bid_qty), (ask, ask_qty) = bids[0], asks[0]
    assert f"BTCUSDT  update id {book.book.update_id}  epoch 1" in out
    assert f"best bid {bid} x {bid_qty}  best ask {ask} x {ask_qty}" in out
    assert f"spread {ask - bid} (" in out
    assert "event time 2024-08-08T23:54:14.300000+00:00" in out
    table = out.splitlines()[-4:]
    assert table[0].split() == ["bid", "qty", "bid", "|", "ask", "ask", "qty"]
    for row, b, a in zip(table[1:], bids[:3], asks[:3], strict=True):
        assert row.split() == [str(b[1]), str(b[0]), "|", str(a[0]), str(a[1])]


def test_book_json_is_the_whole_view(
    env: pytest.MonkeyPatch, book: SyntheticBook, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["BTCUSDT", "--json"]) == 0
    view = json.loads(capsys.readouterr().out)
    bids, asks = book.book.levels()
    assert (view["symbol"], view["epoch"], view["update_id"]) == ("BTCUSDT", 1, book.book.update_id)
    assert view["event_time_us"] == book.book.event_time_us
    assert view["bids"] == [[str(p), str(q)] for p, q in bids[:10]]
    assert view["asks"] == [[str(p), str(q)] for p, q in asks[:10]]
    assert view["best_bid"] == [str(bids[0][0]), str(bids[0][1])]
    assert view["spread"] == str(asks[0][0] - bids[0][0])
    mid = (asks[0][0] + bids[0][0]) / 2
    assert view["mid"] == str(mid)
    assert view["spread_bps"] == pytest.approx(float((asks[0][0] - bids[0][0]) / mid) * 10_000, rel=1e-5)


def test_no_book_is_one_line_and_exit_1(env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["NOSUCHUSDT"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert "no book for NOSUCHUSDT" in captured.err


def test_a_missing_redis_url_is_named(env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    env.setenv("REDIS_URL", "")
    assert main(["BTCUSDT"]) == 2
    assert "REDIS_URL" in capsys.readouterr().err


def test_books_consumer_settings_and_commands(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = schemas.load_settings(BooksConsumerSettings)
    assert (settings.group, settings.metrics_port, settings.levels, settings.warm_start) == (
        "cryptopipe-books",
        9107,
        20,
        True,
    )
    env.setenv("BOOKS_CONSUMER_LEVELS", "50")
    args = build_books_parser().parse_args(["--no-warm-start"])
    flags = {name: getattr(args, name, None) for name in BooksConsumerSettings.model_fields}
    settings = schemas.load_settings(BooksConsumerSettings, **flags)
    assert (settings.levels, settings.warm_start) == (50, False)
    env.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9")
    env.setenv("BOOKS_CONSUMER_LEVELS", "0")
    assert books_main(["--metrics-port", "-1"]) == 2
    assert "BOOKS_CONSUMER_LEVELS" in capsys.readouterr().err


def test_the_books_consumer_service_runs_until_stopped_and_returns_its_books(
    kafka_settings: KafkaSettings,
    redis_settings: RedisSettings,
    redis_client: redis.Redis,
    topic_factory: Callable[..., str],
) -> None:
    topic = topic_factory(BOOK_UPDATES)
    topic_factory(DEAD_LETTERS)
    synthetic = SyntheticBook("BTCUSDT", seed=9)
    records = [synthetic.reset(), *(synthetic.update() for _ in range(20))]
    produce(kafka_settings, topic, [(encode_key(r.symbol), encode_book(r)) for r in records])
    settings = schemas.settings_of(
        BooksConsumerSettings,
        from_beginning=True,
        metrics_port=-1,
        group=f"g-{uuid.uuid4().hex[:8]}",
        levels=3,
    )
    stop = Stop()
    books: dict[str, Any] = {}
    thread = threading.Thread(
        target=lambda: books.update(run(settings, stop, kafka=kafka_settings, redis_settings=redis_settings))
    )
    thread.start()
    store = BookStore(redis_client, redis_settings.key_prefix)
    try:
        eventually(lambda: (view := store.book("BTCUSDT")) and view.update_id == synthetic.book.update_id)
    finally:
        stop.set("test")
        thread.join(30)
    assert not thread.is_alive()
    assert books["topic"] == topic
    assert (books["consumed"], books["written"], books["stale"], books["dead_lettered"]) == (21, 21, 0, 0)
    assert books["book_records"]["applied"] == 21
    view = store.book("BTCUSDT")
    assert view is not None
    assert len(view.bids) == len(view.asks) == 3
