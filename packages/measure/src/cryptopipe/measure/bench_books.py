"""``cryptopipe bench books``: order books through the whole path, measured and checked.

The pipeline runs as ``up --depth 100ms`` runs it, on the replay exchange's synthetic market (its
trades take the touch of a synthetic book; depth@100ms and bookTicker beside them), at ``--rate``
trades per second over ``--symbols`` or a market of ``--market-size`` symbols whose activity is
skewed (a few busy symbols, a long quiet tail). It reports:

- ``book_update_latency_ms``: an exchange event (its ``E``) until the book in Redis shows it, from
  the books consumer's histogram over the measured window only (interpolated inside a bucket; the
  window starts once every book is live, so events buffered while a book waited for its snapshot
  stay out), next to ``floor_broker_rtt_ms``, the bare broker round trip measured in the same run;
- ``resync_s``: after injected gaps (the exchange drops every ``--gap-every``-th depth event), how
  long each symbol's book was out of the stream: from the last update before the gap to the
  reset that resynced it, read from ``book-updates`` itself;
- ``max_sustained_msgs_per_s`` (a ladder of rates: ingest took in 90 % of the offer, the readers'
  lag stayed under half a second's worth, the books balanced), ``cpu_us_per_msg`` per component
  (trades and book events together), ``memory_per_book_bytes`` (an OrderBook of the exchange's
  REST depth, measured with tracemalloc);
- ``books_exact``: every symbol's book in Redis equals the book rebuilt from Kafka alone at its
  update id; ``unwritten``: book records published and never accounted for.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis as redis_lib

from cryptopipe.infra import KafkaEndpoint, RedisEndpoint, resolve_kafka, resolve_redis
from cryptopipe.measure.bench_prices import run_pipeline, walk_ladder
from cryptopipe.measure.floors import bench_parser, floor_ms, measure_broker_rtt, ratio
from cryptopipe.measure.soak import window_percentiles_ms
from cryptopipe.observability import Scrape
from cryptopipe.observability import metrics as m
from cryptopipe.pipeline import EXIT_UNBALANCED, Books, Pipeline, component_of
from cryptopipe.runtime import write_json_atomic
from cryptopipe.schemas import DepthSnapshot, KafkaSettings, OrderBook, RedisSettings
from cryptopipe.schemas.book import Level
from cryptopipe.schemas.book_messages import BookResetRecord, BookUpdateRecord, decode_book_record
from cryptopipe.schemas.topics import BOOK_SNAPSHOTS, BOOK_UPDATES
from cryptopipe.store import BookStore
from cryptopipe.store.book_rebuild import rebuild_books


def _progress(text: str) -> None:
    print(f"bench books: {text}", file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = bench_parser("books", __doc__)
    parser.add_argument("--rate", type=float, default=1000.0, help="offered trades/s, all symbols (1000)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of the measured run (30)")
    parser.add_argument("--symbols", default="btcusdt,ethusdt", help="the symbols (unless --market-size)")
    parser.add_argument(
        "--market-size", type=int, default=0, help="a synthetic market of N symbols (0: --symbols)"
    )
    parser.add_argument(
        "--gap-every", type=int, default=50, help="resync run: drop every Nth depth event (50)"
    )
    parser.add_argument("--gap-seconds", type=float, default=20.0, help="how long the resync run lasts (20)")
    parser.add_argument(
        "--ladder", default="1000,2000,5000", help="offered rates for max sustained; '' skips"
    )
    parser.add_argument("--step-seconds", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--floor-samples", type=int, default=500)
    parser.add_argument(
        "--ingest-shards",
        type=int,
        default=1,
        help="ingest processes, each with its share of the symbols (1)",
    )
    parser.add_argument(
        "--consumers",
        type=int,
        default=1,
        help="prices consumers in one group, splitting the partitions (1)",
    )
    parser.add_argument(
        "--book-consumers",
        type=int,
        default=1,
        help="books consumers in one group, splitting the partitions (1)",
    )
    parser.add_argument("--json", type=Path, dest="json_path", help="write the results here")
    parser.set_defaults(depth="100ms", with_alerting=False, depth_drop_every=None)
    return parser


def book_records(
    kafka: KafkaSettings, topic: str, timeout: float = 120.0
) -> list[BookResetRecord | BookUpdateRecord]:
    """Every record of ``topic``, in each partition's order (per symbol, the stream's order), up to
    the partitions' ends when it starts. Raises :class:`TimeoutError` when a partition's end is not
    reached within ``timeout`` seconds (a slow broker), never a part of the topic in silence."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {**kafka.client_config(), "group.id": f"bench-books-{topic}", "enable.auto.commit": False}
    )
    out: list[BookResetRecord | BookUpdateRecord] = []
    deadline = time.monotonic() + timeout
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        for partition in metadata.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            consumer.assign([TopicPartition(topic, partition, low)])
            position = low
            while position < high:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"reading {topic}[{partition}] back: at offset {position} of {high} "
                        f"after {timeout:.0f} s"
                    )
                message = consumer.poll(1.0)
                if message is None:
                    continue
                position = (message.offset() or position) + 1
                value = message.value()
                if message.error() is None and value:
                    out.append(decode_book_record(value))
    finally:
        consumer.close()
    return out


def resync_seconds(records: Sequence[BookResetRecord | BookUpdateRecord]) -> list[float]:
    """Per resync (a reset after the first of its symbol): seconds from the symbol's last update
    before it to the reset, by their receive times."""
    last_update: dict[str, int] = {}
    seen_reset: set[str] = set()
    out: list[float] = []
    for record in records:
        if isinstance(record, BookUpdateRecord):
            last_update[record.symbol] = record.receive_time_us
            continue
        if record.symbol in seen_reset and record.symbol in last_update:
            out.append((record.receive_time_us - last_update[record.symbol]) / 1e6)
        seen_reset.add(record.symbol)
    return out


@dataclass(slots=True)
class KafkaCheck:
    """Books in Redis against the books rebuilt from Kafka alone: how many were checked, how each
    that differs does, and the deepest book rebuilt (for its memory)."""

    checked: int = 0
    differences: list[str] = field(default_factory=list)
    deepest: OrderBook | None = None


def check_against_kafka(kafka: KafkaSettings, redis_url: str, key_prefix: str) -> KafkaCheck:
    """Each symbol's book in Redis against the book rebuilt from Kafka alone at its update id; every
    symbol is rebuilt in one pass over ``book-updates``."""
    client = redis_lib.Redis.from_url(redis_url)
    try:
        store = BookStore(client, key_prefix)
        views = {s: v for s in store.symbols() if (v := store.book(s)) is not None}
    finally:
        client.close()
    rebuilt = rebuild_books(
        kafka,
        views,
        updates_topic=BOOK_UPDATES.with_prefix(kafka.topic_prefix).name,
        snapshots_topic=BOOK_SNAPSHOTS.with_prefix(kafka.topic_prefix).name,
        until_update_ids={s: v.update_id for s, v in views.items()},
    )
    check = KafkaCheck(checked=len(views))
    for symbol, view in views.items():
        found = rebuilt[symbol]
        book = found.book
        where = f"{symbol}: Redis at epoch {view.epoch} id {view.update_id}"
        if book is None or book.update_id != view.update_id:
            got = "no book" if book is None else f"epoch {found.epoch} id {book.update_id}"
            check.differences.append(f"{where}, rebuilt {got} (from {found.partition}@{found.next_offset})")
            continue
        if not holds_the_same_levels(book, view.bids, view.asks):
            check.differences.append(f"{where}, rebuilt at that id with other levels")
        elif check.deepest is None or len(book) > len(check.deepest):
            check.deepest = book
    return check


def holds_the_same_levels(book: OrderBook, bids: Sequence[Level], asks: Sequence[Level]) -> bool:
    """Whether the top levels Redis holds (``bids``, ``asks``: up to the consumer's N per side) are
    ``book``'s. N is the deeper side's count: a side with fewer levels than N holds all its book's,
    so a thin side does not cut the other one short."""
    top = book.top(max(len(bids), len(asks)))
    return (tuple(top.bids), tuple(top.asks)) == (tuple(bids), tuple(asks))


def books_exact(
    kafka: KafkaSettings, redis_url: str, key_prefix: str
) -> tuple[bool, int, DepthSnapshot | None]:
    """Whether every symbol's book in Redis equals the book rebuilt from Kafka alone at its id;
    how many were checked; the deepest book rebuilt (for its memory)."""
    started = time.monotonic()
    check = check_against_kafka(kafka, redis_url, key_prefix)
    exact = check.checked > 0 and not check.differences
    _progress(
        f"{check.checked} books checked against Kafka in {time.monotonic() - started:.1f} s: "
        + ("exact" if exact else f"{len(check.differences)} differ: " + "; ".join(check.differences[:5]))
    )
    deepest = check.deepest
    return exact, check.checked, None if deepest is None or not exact else deepest.top(len(deepest))


def memory_per_book_bytes(snapshot: DepthSnapshot, samples: int = 20) -> int:
    """Bytes an OrderBook of ``snapshot``'s depth holds (tracemalloc, mean of ``samples`` books)."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        books = [OrderBook.from_snapshot(snapshot) for _ in range(samples)]
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return int((after - before) / len(books))


def wait_books_live(pipeline: Pipeline, redis: RedisEndpoint, symbols: int) -> None:
    """The measured window starts once every symbol's book is in Redis: each goes live at its REST
    snapshot, and ingest spends at most INGEST_REST_WEIGHT_PER_MINUTE on snapshots, so a whole
    market takes minutes to sync. A progress line every 5 s; after ``max(120, symbols / 2)``
    seconds the window starts anyway, and the run says how many books it checked."""
    prefix = pipeline.config.servers.redis.key_prefix
    client = redis_lib.Redis.from_url(redis.url.get_secret_value())
    store = BookStore(client, prefix)
    started = time.monotonic()
    deadline = started + max(120.0, symbols / 2)
    said = started
    try:
        while (live := len(store.symbols())) < symbols:
            now = time.monotonic()
            if now > deadline:
                _progress(
                    f"warm-up: {live} of {symbols} books live after {now - started:.0f} s; measuring anyway"
                )
                return
            if now - said >= 5:
                _progress(f"warm-up: {live} of {symbols} books live ({now - started:.0f} s)")
                said = now
            time.sleep(0.5)
        _progress(f"warm-up: all {symbols} books live after {time.monotonic() - started:.1f} s")
    finally:
        client.close()


def _main_run(
    args: argparse.Namespace, kafka: KafkaEndpoint, redis: RedisEndpoint, workdir: Path
) -> dict[str, Any]:
    """The measured run: latency, CPU per message, the books checked against Kafka."""
    _progress(f"books at {args.rate:.0f} trades/s for {args.duration:.0f} s")
    symbols = args.market_size or len(args.symbols.split(","))
    run = run_pipeline(
        args.rate,
        args.duration,
        base=args,
        kafka=kafka,
        redis=redis,
        workdir=workdir,
        warmup=lambda pipeline: wait_books_live(pipeline, redis, symbols),
    )
    consumer = Scrape.merged(
        *(scrape for name, scrape in run["final"].items() if component_of(name) == "books-consumer")
    )
    window = run["window"]
    messages = window["published"] + window["book_events"]
    settings = kafka.settings.model_copy(update={"topic_prefix": run["topic_prefix"]})
    exact, checked, biggest = books_exact(
        settings, redis.url.get_secret_value(), f"cryptopipe:{run['topic_prefix']}"
    )
    if checked < symbols:
        _progress(
            f"only {checked} of {symbols} symbols had a book in Redis: each book goes live at its "
            "snapshot, and ingest spends INGEST_REST_WEIGHT_PER_MINUTE on them (a run shorter than "
            "symbols x the snapshot's weight / that budget minutes leaves some waiting)"
        )
    books: Books = run["books"]
    return {
        # What the books consumers observed in the window (and the drain after it), not before.
        "book_update_latency_ms": window_percentiles_ms(run["books_before"], consumer, m.BOOK_E2E_LATENCY),
        "book_system_latency_ms": window_percentiles_ms(run["books_before"], consumer, m.BOOK_LATENCY),
        "messages_per_s": round(messages / run["elapsed_s"], 1),
        "cpu_seconds": run["cpu_seconds"],
        "cpu_us_per_msg": {
            name: round(seconds / messages * 1e6, 1) if messages else None
            for name, seconds in run["cpu_seconds"].items()
        },
        "books_exact": exact,
        "books_checked": checked,
        "symbols": symbols,
        "memory_per_book_bytes": memory_per_book_bytes(biggest) if biggest is not None else None,
        "unwritten": books.unwritten,
        "lost": books.lost,
        "book_resyncs": run["summary"]["book_resyncs"],
        "book_ticker_mismatches": run["summary"]["book_ticker_mismatches"],
        "reconciliation": books.as_dict(),
    }


def _resync_run(
    args: argparse.Namespace, kafka: KafkaEndpoint, redis: RedisEndpoint, workdir: Path
) -> dict[str, Any]:
    """Gaps injected by the exchange: how long each book was out of the stream until its reset."""
    _progress(f"resyncs: every {args.gap_every}th depth event dropped, {args.gap_seconds:.0f} s")
    gappy = argparse.Namespace(**{**vars(args), "depth_drop_every": args.gap_every})
    run = run_pipeline(args.rate, args.gap_seconds, base=gappy, kafka=kafka, redis=redis, workdir=workdir)
    topic = BOOK_UPDATES.with_prefix(run["topic_prefix"]).name
    seconds = resync_seconds(book_records(kafka.settings, topic))
    books: Books = run["books"]
    return {
        "resyncs": len(seconds),
        "resync_s": {
            "p50": round(statistics.median(seconds), 3) if seconds else None,
            "max": round(max(seconds), 3) if seconds else None,
        },
        "balanced": books.balanced,
    }


def _ladder(
    args: argparse.Namespace, kafka: KafkaEndpoint, redis: RedisEndpoint, workdir: Path
) -> dict[str, Any]:
    """The ladder of bench prices, counting book events as messages too."""
    steps: list[dict[str, Any]] = []
    for _, run, figures in walk_ladder(args, kafka, redis, workdir):
        window = run["window"]
        messages = window["published"] + window["book_events"]
        steps.append({**figures, "messages_per_s": round(messages / run["elapsed_s"], 1)})
    kept = [step["messages_per_s"] for step in steps if step["kept_up"]]
    return {"max_sustained_msgs_per_s": max(kept, default=0.0), "ladder": steps}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with (
        contextlib.ExitStack() as stack,
        tempfile.TemporaryDirectory(prefix="cryptopipe-bench-books-") as tmp,
    ):
        kafka = resolve_kafka(KafkaSettings(), stack=stack)
        redis = resolve_redis(RedisSettings(), stack=stack)
        _progress(f"broker {kafka}; redis {redis}")
        floor = floor_ms(measure_broker_rtt(kafka.settings, args.floor_samples))
        result = {"offered_rate_msgs_per_s": args.rate, "floor_broker_rtt_ms": floor}
        result |= _main_run(args, kafka, redis, Path(tmp))
        result["ratio_p99_to_floor"] = ratio(result["book_update_latency_ms"]["p99"], floor["p99"])
        result |= _resync_run(args, kafka, redis, Path(tmp))
        result |= _ladder(args, kafka, redis, Path(tmp))
    for key in ("book_update_latency_ms", "floor_broker_rtt_ms", "resync_s", "max_sustained_msgs_per_s"):
        print(f"{key:26} {result[key]}")
    for key in ("cpu_us_per_msg", "memory_per_book_bytes", "books_exact", "unwritten"):
        print(f"{key:26} {result[key]}")
    if args.json_path is not None:
        write_json_atomic(args.json_path, result, indent=2)
    good = result["books_exact"] and result["unwritten"] == 0
    _progress("books exact and balanced" if good else "BOOKS NOT EXACT OR NOT BALANCED")
    return 0 if good else EXIT_UNBALANCED
