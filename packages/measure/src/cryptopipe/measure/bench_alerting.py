"""``cryptopipe bench alerting``: micro-batch times and alert latency of the real job, measured.

Setup: the broker and Redis ``cryptopipe up`` would use (configured, else started locally), fresh
topics, the alerting job in this process, the store's alerts consumer (Kafka -> Redis) in a thread,
and a producer writing trades at ``--rate`` with trade time = receive time = now. Every
(symbol, window) is made to cross the threshold, so every window yields one alert.

Final-alert latency (``final_alert_latency_ms``): alert written to Redis minus the receive time of
the symbol's first trade at window end + delay or later, the trade that closes the window.
Early-alert latency (``early_alert_latency_ms``): alert in Redis minus the receive time of the trade
that crossed the threshold (the job's ``trigger_receive_time_us``).
The bench knows every trade it produced, so it computes that trigger itself and cross-checks the
job's own ``trigger_receive_time_us``. Windows that end during ``--warmup`` are left out.

Book load (``--book-rate`` updates/s over ``--book-symbols``, 0 for none): ``book-updates``
records as ingest publishes them (a reset, then continuous updates), produced beside the trades,
which the express lane follows (:mod:`cryptopipe.measure.alert_book_load`) for the ``--book-rule``
rules: mid moves (early and final) and spread levels. Book alerts are reported apart
(``book_early_alert_latency_ms``, ``book_final_alert_latency_ms``, and the latter split into level
and mid rules), each against the update that decided it: early, the update that crossed; a mid
window's final, the first update at window end + delay or later; a level rule's, the first
update at or after the episode's start + hold (a level rule has no window to close). Every book
alert raised is checked against :func:`~cryptopipe.alerting.book_reference.reference_book_alerts`
over every record produced (``book_alerts``: reference, raised, matching, missing, unexpected).

Floors, measured in the same run on the same servers once the job has stopped (the broker warm):
the raw broker round trip (``floor_broker_rtt_ms``, as ``bench prices`` measures it) and a raw
Redis ``SET`` (``floor_redis_set_ms``). ``ratio_early_p99_to_floor`` and
``ratio_final_p99_to_floor`` (and ``ratio_book_early_p99_to_floor``, ``ratio_book_final_p99_to_floor``)
divide the alert latencies' p99 by the broker floor's p99; an alert's
path crosses the broker twice (trades in, alerts out) and writes Redis once.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import redis

from cryptopipe.alerting.job import AlertingJob
from cryptopipe.alerting.rules import Rule, book_rules, parse_rules, price_rules, validate_rules
from cryptopipe.alerting.settings import AlertingSettings
from cryptopipe.infra import KafkaEndpoint, RedisEndpoint, resolve_kafka, resolve_redis
from cryptopipe.measure.alert_batches import micro_batches, progress_time_us
from cryptopipe.measure.alert_book_load import BookLoad, await_book_alerts, book_lines, book_report
from cryptopipe.measure.alert_load import Produced, TradeLoad, percentiles, percentiles_ms
from cryptopipe.measure.floors import FLOOR_SAMPLES, floor_ms, measure_broker_rtt, ratio
from cryptopipe.runtime import ensure_topics
from cryptopipe.schemas import (
    ALERTS,
    BOOK_UPDATES,
    PRICES,
    Alert,
    KafkaSettings,
    RedisSettings,
    settings_of,
)
from cryptopipe.store import AlertSink, ConsumerLoop, WriteResult
from cryptopipe.store.bench import measure_redis_set_floor

logger = logging.getLogger(__name__)

DEFAULT_RULES = "5s:0.2%;5s:0.2%:early:name=5s-early"
DEFAULT_BOOK_RULES = "mid:5s:0.2%;mid:5s:0.2%:early:name=mid-5s-early;spread>5bps:1s"
#: The Spark query's only mode: real-time mode cannot run its Python stateful operator. Alerts
#: reach Redis first through the express lane beside it (``express`` in the report), unless
#: ``--no-express``.
MODE = "micro-batch"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cryptopipe bench alerting",
        description="Kafka -> Spark alerting job -> alerts topic -> Redis: micro-batch times, alert latency.",
    )
    parser.add_argument("--rate", type=float, default=200.0, help="trades per second (default 200)")
    parser.add_argument("--duration", type=float, default=60.0, help="measured seconds (default 60)")
    parser.add_argument("--warmup", type=float, default=20.0, help="seconds before measuring (default 20)")
    parser.add_argument("--symbols", type=int, default=8, help="number of symbols (default 8)")
    parser.add_argument(
        "--rule",
        default=DEFAULT_RULES,
        help=f"alert rule(s), ';'-separated (default {DEFAULT_RULES.replace('%', '%%')}: final and early)",
    )
    parser.add_argument(
        "--book-rate",
        type=float,
        default=200.0,
        help="book updates per second beside the trades (200; 0: none)",
    )
    parser.add_argument("--book-symbols", type=int, default=4, help="symbols with a book (default 4)")
    parser.add_argument(
        "--book-rule",
        default=DEFAULT_BOOK_RULES,
        help=f"book rule(s) with --book-rate (default {DEFAULT_BOOK_RULES.replace('%', '%%')})",
    )
    parser.add_argument(
        "--source", default="auto", choices=["auto", "native", "python"], help="Kafka reader (default auto)"
    )
    parser.add_argument(
        "--no-express", action="store_true", help="Spark alone, without the express lane (its latency)"
    )
    parser.add_argument("--watermark-delay-ms", type=int, default=1000)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--trigger-interval-ms", type=int, default=0)
    parser.add_argument("--shuffle-partitions", type=int, default=1)
    parser.add_argument(
        "--conf", action="append", default=[], metavar="KEY=VALUE", help="extra Spark setting"
    )
    parser.add_argument("--checkpoint-dir", type=Path, help="default: a temporary directory")
    parser.add_argument(
        "--floor-samples",
        type=int,
        default=FLOOR_SAMPLES,
        help=f"broker round trips and Redis SETs (default {FLOOR_SAMPLES})",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the results here")
    parser.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser


@dataclass
class _Run:
    """What one run collected: the alerts written (with their Redis write time) and the job's view."""

    kafka: KafkaEndpoint
    redis: RedisEndpoint
    source_kind: str
    symbols: list[str]
    produced: Produced
    measure_from_us: int
    closable_until_us: int
    written: list[tuple[Alert, int]]
    progress: list[Any]
    rows_read: int
    alerts_published: int
    express_published: int | None
    floor_broker_ms: list[float]
    floor_redis_ms: list[float]
    books: BookLoad | None = None
    book_records_read: int | None = None
    """Book records the express lane read (None without the lane)."""


def bench_rules(args: argparse.Namespace) -> tuple[Rule, ...]:
    """``--rule`` and, with book load, ``--book-rule``: one set, names unique."""
    book_text = args.book_rule if args.book_rate > 0 else ""
    return validate_rules([*parse_rules(args.rule), *(parse_rules(book_text) if book_text.strip() else ())])


def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    rules = bench_rules(args)
    return _report(args, rules, _run(args, rules))


def _loads(
    args: argparse.Namespace, rules: Sequence[Rule], kafka: KafkaSettings
) -> tuple[TradeLoad, BookLoad | None]:
    """Trades that cross every price rule's windows (the shortest window, twice the largest
    threshold) and, with book rules, the book load."""
    trade_rules = price_rules(rules)
    seconds = args.warmup + args.duration
    trades = TradeLoad(
        kafka,
        PRICES.with_prefix(kafka.topic_prefix).name,
        args.rate,
        seconds,
        [f"SYM{i}USDT" for i in range(args.symbols)],
        min((rule.window_us for rule in trade_rules), default=5_000_000),
        max((rule.threshold for rule in trade_rules), default=Decimal("0.002")) * 2,
    )
    if not book_rules(rules):
        return trades, None
    topic = BOOK_UPDATES.with_prefix(kafka.topic_prefix).name
    symbols = [f"BOOK{i}USDT" for i in range(args.book_symbols)]
    return trades, BookLoad(kafka, topic, args.book_rate, seconds, symbols, rules)


def _produce(*loads: TradeLoad | BookLoad | None) -> None:
    """Run the loads together until they are done; re-raise a load's error."""
    started = [load for load in loads if load is not None]
    for load in started:
        load.start()
    for load in started:
        load.join()
        if load.error is not None:
            raise load.error


def _run(args: argparse.Namespace, rules: Sequence[Rule]) -> _Run:
    written: list[tuple[Alert, int]] = []
    with contextlib.ExitStack() as stack:
        kafka_endpoint = resolve_kafka(KafkaSettings(), stack=stack)
        redis_endpoint = resolve_redis(RedisSettings(), stack=stack)
        prefix = f"bench-{uuid.uuid4().hex[:8]}-"
        kafka = kafka_endpoint.settings.model_copy(update={"topic_prefix": prefix})
        topics = [PRICES, ALERTS, *([BOOK_UPDATES] if book_rules(rules) else [])]
        ensure_topics(kafka, [topic.with_prefix(prefix) for topic in topics])
        _start_alerts_consumer(stack, kafka, redis_endpoint, prefix, written)
        job = _start_job(stack, args, rules, kafka)
        producer, books = _loads(args, rules, kafka)
        window_us = producer.window_us
        measure_from_us = time.time_ns() // 1000 + int(args.warmup * 1e6)
        _produce(producer, books)
        # Windows ending up to the last trade - delay can close; wait for the job to read
        # everything and for their alerts.
        closable_until = (producer.produced.last_us or measure_from_us) - args.watermark_delay_ms * 1000
        _await_alerts(job, producer.produced.count, written, window_us, closable_until)
        if books is not None:
            await_book_alerts(job, books, rules, args.watermark_delay_ms, written)
        run = _Run(
            kafka=kafka_endpoint,
            redis=redis_endpoint,
            source_kind=job.source_kind,
            symbols=producer.symbols,
            produced=producer.produced,
            measure_from_us=measure_from_us,
            closable_until_us=closable_until,
            written=written,
            progress=[p for p in job.recorder.progress if progress_time_us(p) >= measure_from_us],
            rows_read=job.recorder.rows_read,
            alerts_published=job.stats.alerts_published,
            express_published=job.express.stats.alerts_published if job.express is not None else None,
            floor_broker_ms=[],
            floor_redis_ms=[],
            books=books,
            book_records_read=job.express.stats.book_records if job.express is not None else None,
        )
        job.close()  # the floors go alone on the servers the run has warmed up
        logger.warning("floors: %d broker round trips and Redis SETs", args.floor_samples)
        run.floor_broker_ms = measure_broker_rtt(kafka, args.floor_samples)
        redis_url = redis_endpoint.url.get_secret_value()
        run.floor_redis_ms = measure_redis_set_floor(redis_url, args.floor_samples)
        return run


def _start_alerts_consumer(
    stack: contextlib.ExitStack,
    kafka: KafkaSettings,
    redis_endpoint: RedisEndpoint,
    prefix: str,
    written: list[tuple[Alert, int]],
) -> None:
    """The store's alerts consumer (Kafka -> Redis) in a thread, noting when each alert was written."""

    first: set[str] = set()

    class TimedAlertSink(AlertSink):
        """Notes the first copy of each alert, the one Redis keeps (the express lane's, or Spark's)."""

        def write(self, batch: list[Alert]) -> WriteResult:
            result = super().write(batch)
            for alert in batch:
                if alert.idempotency_key not in first:
                    first.add(alert.idempotency_key)
                    written.append((alert, result.written_time_us))
            return result

    client = redis.Redis.from_url(redis_endpoint.url.get_secret_value())
    stack.callback(client.close)
    loop = ConsumerLoop(
        TimedAlertSink(client, key_prefix=f"{prefix}:"),
        kafka=kafka,
        topic=ALERTS.with_prefix(prefix).name,
        group_id=f"{prefix}alerts",
        from_beginning=True,
    )
    consumer = threading.Thread(target=loop.run, name="bench-alerts-consumer", daemon=True)
    consumer.start()
    stack.callback(consumer.join, 30)
    stack.callback(loop.stop)


def _start_job(
    stack: contextlib.ExitStack, args: argparse.Namespace, rules: Sequence[Rule], kafka: KafkaSettings
) -> AlertingJob:
    """The alerting job in this process, started and past its first micro-batch."""
    checkpoint = args.checkpoint_dir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
    settings = settings_of(
        AlertingSettings,
        rules=rules,
        watermark_delay_ms=args.watermark_delay_ms,
        master=args.master,
        source=args.source,
        checkpoint_dir=checkpoint,
        trigger_interval_ms=args.trigger_interval_ms,
        shuffle_partitions=args.shuffle_partitions,
        spark_conf=dict(item.split("=", 1) for item in args.conf),
        starting_offsets="latest",
        express=not args.no_express,
        # Every micro-batch of the measured window is read back (a bench run lasts minutes).
        progress_history=1_000_000,
    )
    job = AlertingJob(settings, kafka)
    stack.callback(job.close)
    started = time.monotonic()
    job.start()
    # The first micro-batch fixes the "latest" starting offsets: trades before it would be missed.
    while not job.recorder.progress and time.monotonic() - started < 120:
        job.await_termination(0.1)
    logger.warning("job started in %.1f s; warming up", time.monotonic() - started)
    return job


def _await_alerts(
    job: AlertingJob, produced: int, written: list[tuple[Alert, int]], window_us: int, closable_until: int
) -> None:
    """Until the job read every trade and the last closable window's alert is in Redis (60 s at most)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job.await_termination(0.2)
        read = job.recorder.rows_read
        last = max((a.window_end_us for a, _ in written if a.kind == "final"), default=0)
        if read >= produced and last + window_us > closable_until:
            return


def _latencies(args: argparse.Namespace, rules: Sequence[Rule], run: _Run) -> dict[str, Any]:
    """Alert latencies against the trade that closed (or crossed) each window, and the books."""
    start_us = run.measure_from_us
    names = {rule.name for rule in price_rules(rules)}
    trades = [(a, w) for a, w in run.written if a.rule in names]
    measured = [(a, w) for a, w in trades if a.window_end_us >= start_us and a.kind == "final"]
    early = [
        (w - a.trigger_receive_time_us) / 1e6
        for a, w in trades
        if a.kind == "early" and a.window_start_us >= start_us and a.trigger_receive_time_us is not None
    ]
    exact, by_job, after_end, emit = [], [], [], []
    missing_trigger = 0
    for alert, written_us in measured:
        trigger = run.produced.trigger(alert.symbol, alert.window_end_us, args.watermark_delay_ms)
        if trigger is None:
            missing_trigger += 1
            continue
        exact.append((written_us - trigger) / 1e6)
        after_end.append((written_us - alert.window_end_us) / 1e6)
        emit.append((alert.raised_time_us - trigger) / 1e6)
        if alert.trigger_receive_time_us is not None:
            by_job.append((written_us - alert.trigger_receive_time_us) / 1e6)
    expected = {
        (rule.name, symbol, start)
        for rule in price_rules(rules)
        if rule.mode == "final"
        for symbol in run.symbols
        for start in range(
            -(-start_us // rule.window_us) * rule.window_us,
            run.closable_until_us - rule.window_us + 1,
            rule.window_us,
        )
    }
    got = {(a.rule, a.symbol, a.window_start_us) for a, _ in measured}
    return {
        "early_alert_latency_ms": percentiles_ms(early),
        "final_alert_latency_ms": percentiles_ms(exact),
        "alert_latency_s": percentiles(exact),
        "alert_latency_job_trigger_s": percentiles(by_job),
        "alert_after_window_end_s": percentiles(after_end),
        "alert_publish_latency_s": percentiles(emit),
        "early_alert_latency_s": percentiles(early),
        "alerts": {
            "measured": len(measured),
            "expected_windows": len(expected),
            "missing_windows": len(expected - got),
            "published_total": run.alerts_published,
            "express_published": run.express_published,
            "without_trigger": missing_trigger,
        },
    }


def _books(
    args: argparse.Namespace, rules: Sequence[Rule], run: _Run, floor_p99: float | None
) -> dict[str, Any]:
    if run.books is None:
        return {"book_load": None}
    delay, measured_from = args.watermark_delay_ms, run.measure_from_us
    return book_report(run.books, rules, delay, run.written, measured_from, floor_p99, run.book_records_read)


def _report(args: argparse.Namespace, rules: Sequence[Rule], run: _Run) -> dict[str, Any]:
    produced = run.produced.count
    latencies = _latencies(args, rules, run)
    floor = floor_ms(run.floor_broker_ms)
    return {
        "config": {
            "rate": args.rate,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "symbols": args.symbols,
            "rules": [rule.describe() for rule in rules],
            "watermark_delay_ms": args.watermark_delay_ms,
            "master": args.master,
            "trigger_interval_ms": args.trigger_interval_ms,
            "shuffle_partitions": args.shuffle_partitions,
            "conf": args.conf,
            "source": run.source_kind,
            "kafka": str(run.kafka),
            "redis": str(run.redis),
        },
        "source": run.source_kind,
        "mode": MODE,
        "express": run.express_published is not None,
        **latencies,
        "floor_broker_rtt_ms": floor,
        "floor_redis_set_ms": floor_ms(run.floor_redis_ms),
        "ratio_early_p99_to_floor": ratio(latencies["early_alert_latency_ms"]["p99"], floor["p99"]),
        "ratio_final_p99_to_floor": ratio(latencies["final_alert_latency_ms"]["p99"], floor["p99"]),
        **_books(args, rules, run, floor["p99"]),
        **micro_batches(run.progress),
        "input": {
            "produced": produced,
            "target_rate": args.rate,
            "produced_rate": produced / (args.warmup + args.duration),
            "rows_read_by_job": run.rows_read,
            "processed_rows_per_s_mean": statistics.fmean(
                [float(p.processedRowsPerSecond or 0) for p in run.progress if p.numInputRows] or [0.0]
            ),
            "kept_up": run.rows_read >= produced,
        },
    }


def _fmt(stats: dict[str, Any], unit: float = 1.0) -> str:
    if not stats.get("count"):
        return "n/a"
    return " ".join(f"{k} {stats[k] * unit:.3f}" for k in ("p50", "p95", "p99", "max"))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("py4j").setLevel(logging.WARNING)
    result = run_bench(args)
    print(f"alerting bench: {args.rate:g} trades/s for {args.duration:g} s (+{args.warmup:g} s warm-up)")
    lane = "on" if result["express"] else "off"
    print(f"  source {result['source']}, mode {result['mode']}, express lane {lane}")
    print(f"  early alert latency (crossing trade -> Redis), ms: {result['early_alert_latency_ms']}")
    print(f"  final alert latency (closing trade -> Redis), ms:  {result['final_alert_latency_ms']}")
    for line in book_lines(result):
        print(line)
    floors = f"broker round trip {result['floor_broker_rtt_ms']}, Redis SET {result['floor_redis_set_ms']}"
    print(f"  floors, ms: {floors}")
    print(
        f"  p99 / broker floor p99: early {result['ratio_early_p99_to_floor']}, "
        f"final {result['ratio_final_p99_to_floor']}"
    )
    print(f"  micro-batch, ms: {result['micro_batch_ms']}")
    print(f"  sustained input rate: {result['sustained_input_rate']} trades/s")
    print(f"  alert latency (trigger ingested -> Redis), s: {_fmt(result['alert_latency_s'])}")
    print(f"  alert after window end, s:                    {_fmt(result['alert_after_window_end_s'])}")
    print(f"  early alerts (crossing trade -> Redis), s:    {_fmt(result['early_alert_latency_s'])}")
    print(f"  micro-batch, s:                               {_fmt(result['micro_batch_s'])}")
    print(f"    with data:                                  {_fmt(result['micro_batch_data_s'])}")
    print(f"    no-data (watermark) batches:                {_fmt(result['micro_batch_nodata_s'])}")
    phases = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in result["micro_batch_phase_mean_s"].items())
    print(f"    mean phases: {phases}")
    rate, kept_up = result["input"]["produced_rate"], result["input"]["kept_up"]
    print(f"  input: {rate:.1f} trades/s produced, kept up: {kept_up}")
    print(f"  alerts: {result['alerts']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")
        print(f"  wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
