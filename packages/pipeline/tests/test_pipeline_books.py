"""The books: what reached Kafka against what reached Redis, from the services' own typed stats."""

from __future__ import annotations

from cryptopipe.ingest import IngestStats
from cryptopipe.observability import Scrape
from cryptopipe.pipeline.books import (
    Books,
    TopicBooks,
    ingest_stats,
    loop_stats,
    stats_from,
    summed,
    unaccounted,
)
from cryptopipe.store import LoopStats


def _prices(published: int, **handled: int) -> TopicBooks:
    return TopicBooks("prices", published, LoopStats(**handled))


def test_unwritten_is_what_was_published_and_never_accounted_for() -> None:
    books = _prices(88_567, consumed=29_160, written=29_160)
    assert books.unwritten == 88_567 - 29_160
    assert books.surplus == 0
    # A stale record (older than the latest in Redis) is accounted for, and so is a dead letter.
    books = _prices(100, consumed=100, written=90, stale=7, dead_lettered=3)
    assert (books.accounted, books.unwritten, books.surplus) == (100, 0, 0)
    assert books.as_dict() == {
        "published": 100,
        "consumed": 100,
        "written": 90,
        "stale": 7,
        "dead_lettered": 3,
        "batches": 0,
        "redis_failures": 0,
        "redelivered": 0,
        "unwritten": 0,
        "surplus": 0,
    }
    # Records left by an earlier run are surplus, never negative unwritten.
    books = _prices(10, consumed=15, written=15)
    assert (books.unwritten, books.surplus) == (0, 5)


def test_books_that_do_not_balance_say_so_in_one_line_and_lost_is_not_zero() -> None:
    ingest = IngestStats(received=88_567, published=88_567)
    books = Books(ingest, {"prices": _prices(88_567, consumed=87_333, written=87_000, stale=333)})
    assert books.unwritten == 1234
    assert books.lost == 1234
    assert not books.balanced
    assert books.line() == (
        "BOOKS DO NOT BALANCE: 1234 of 88567 published trades were never written to Redis (prices topic)"
    )
    assert "\n" not in books.line()
    summary = books.as_dict()
    assert summary["balanced"] is False
    assert summary["prices"]["unwritten"] == 1234
    assert summary["ingest"]["received"] == summary["ingest"]["published"] == 88_567
    assert summary["ingest"]["unaccounted"] == 0


def test_lost_counts_every_missing_trade_once() -> None:
    # 1000 live + 20 backfilled taken in; 5 duplicates dropped on purpose; 3 lost in the producer;
    # 2 vanished inside ingest; of the 1010 published, 4 never reached Redis.
    ingest = IngestStats(received=1000, backfilled=20, duplicates=5, published=1010, lost=3)
    assert unaccounted(ingest) == 2
    prices = _prices(1010, consumed=1006, written=1000, stale=6)
    alerts = TopicBooks("alerts", 3, LoopStats(consumed=1, written=1))
    books = Books(ingest, {"prices": prices, "alerts": alerts})
    assert books.lost == 3 + 2 + 4
    assert books.unwritten == 4 + 2  # trades and alerts
    assert books.line() == (
        "BOOKS DO NOT BALANCE: 2 of 1020 trades ingest took in were neither published, duplicates "
        "nor counted lost (ingest); 4 of 1010 published trades were never written to Redis (prices "
        "topic); 2 of 3 published alerts were never written to Redis (alerts topic)"
    )


def test_balanced_books_print_one_line_of_figures() -> None:
    ingest = IngestStats(received=1200, published=1200)
    prices = _prices(1200, consumed=1200, written=1195, stale=5)
    alerts = TopicBooks("alerts", 1, LoopStats(consumed=1, written=1))
    books = Books(ingest, {"prices": prices, "alerts": alerts})
    assert books.balanced
    assert (books.unwritten, books.lost) == (0, 0)
    assert books.line() == (
        "books balance: 1200 trades received, 1200 published = 1195 written + 5 stale + 0 dead-lettered, "
        "0 lost (prices topic); 1 alerts published = 1 written + 0 second copies (Spark's and the express "
        "lane's) + 0 dead-lettered (alerts topic)"
    )
    # Losses ingest counted (with a reason) are in the books, and in `lost`.
    counted = Books(
        IngestStats(received=10, published=8, lost=2), {"prices": _prices(8, consumed=8, written=8)}
    )
    assert counted.balanced
    assert counted.lost == 2
    # Trades missing from the stream that backfill could not recover are lost too, and said so.
    gaps = Books(
        IngestStats(received=10, published=10, unfilled=7), {"prices": _prices(10, consumed=10, written=10)}
    )
    assert gaps.lost == 7
    assert "7 lost (7 in stream gaps never backfilled)" in gaps.line()
    assert ingest_stats({"received": 3, "published": 3, "unfilled": 4}, Scrape.from_text("")).unfilled == 4


def test_books_fall_back_to_the_last_scrape_when_a_service_left_no_stats() -> None:
    consumer = Scrape.from_text(
        "# TYPE cryptopipe_consumer_messages counter\n"
        'cryptopipe_consumer_messages_total{consumer="prices",topic="prices"} 90\n'
        "# TYPE cryptopipe_prices_stale counter\n"
        'cryptopipe_prices_stale_total{symbol="BTCUSDT"} 4\n'
        "# TYPE cryptopipe_dead_letters counter\n"
        'cryptopipe_dead_letters_total{component="prices-consumer",reason="malformed_json"} 1\n'
        'cryptopipe_dead_letters_total{component="ingest",reason="malformed_json"} 7\n'
    )
    handled = loop_stats({}, consumer, "prices-consumer", stale_metric=True)
    assert (handled.consumed, handled.written, handled.stale, handled.dead_lettered) == (91, 86, 4, 1)
    assert TopicBooks("prices", 100, handled).unwritten == 9
    stats = {"topic": "prices", "consumed": 100, "written": 99, "stale": 1, "dead_lettered": 0}
    handled = loop_stats(stats, consumer, "prices-consumer", stale_metric=True)
    assert TopicBooks("prices", 100, handled).unwritten == 0
    ingest = Scrape.from_text(
        "# TYPE cryptopipe_ingest_trades_received counter\n"
        'cryptopipe_ingest_trades_received_total{symbol="BTCUSDT"} 50\n'
        'cryptopipe_ingest_trades_received_total{symbol="ETHUSDT"} 50\n'
        "# TYPE cryptopipe_ingest_trades_published counter\n"
        'cryptopipe_ingest_trades_published_total{symbol="BTCUSDT"} 48\n'
    )
    assert ingest_stats({}, ingest) == IngestStats(received=100, published=48)
    assert ingest_stats({"received": 3, "published": 3, "gaps": 1}, ingest) == IngestStats(
        received=3, published=3, gaps=1
    )


def test_a_stats_file_is_read_into_the_services_own_type() -> None:
    assert stats_from(LoopStats, {}) is None  # no file: the caller falls back to the scrape
    # Unknown keys (the final metrics, fields a newer service writes) are left out; junk is not a count.
    loop = stats_from(LoopStats, {"consumed": 5, "written": 5, "metrics": "# text", "stale": "x"})
    assert loop == LoopStats(consumed=5, written=5)


def test_books_sum_the_shards_and_the_consumers() -> None:
    shards = [IngestStats(received=600, published=598, lost=2), IngestStats(received=400, published=400)]
    ingest = summed(IngestStats, shards)
    assert ingest == IngestStats(received=1000, published=998, lost=2)
    members = [
        LoopStats(consumed=500, written=495, stale=5),
        LoopStats(consumed=498, written=497, dead_lettered=1),
    ]
    prices = TopicBooks("prices", ingest.published, summed(LoopStats, members))
    done = prices.handled
    assert (prices.published, done.consumed, done.written, done.stale, done.dead_lettered) == (
        998,
        998,
        992,
        5,
        1,
    )
    assert prices.unwritten == 0
    books = Books(
        ingest,
        {"prices": prices},
        shards={"ingest": shards[0], "ingest-2": shards[1]},
        consumers={"prices": {"prices-consumer": members[0], "prices-consumer-2": members[1]}},
    )
    assert books.balanced
    assert books.lost == 2
    figures = books.as_dict()
    assert figures["ingest"]["received"] == 1000
    assert figures["ingest_by_shard"]["ingest-2"]["published"] == 400
    by_consumer = figures["prices_by_consumer"]
    assert {k: by_consumer["prices-consumer"][k] for k in ("consumed", "written", "stale")} == {
        "consumed": 500,
        "written": 495,
        "stale": 5,
    }
    assert by_consumer["prices-consumer-2"]["dead_lettered"] == 1
    # A member short of its share shows up in the sum as unwritten.
    short = TopicBooks("prices", 998, summed(LoopStats, [members[0], LoopStats(consumed=400, written=400)]))
    assert short.unwritten == 998 - 900
