"""``cryptopipe bench prices``: replay exchange -> ingest -> Kafka -> consumer -> Redis, measured.

The pipeline runs exactly as ``cryptopipe up`` runs it (same processes, same settings). System
latency (Redis written minus local receive time) comes from the consumer's exact per-trade
samples, not histogram buckets. Floors are measured in the same run on the same servers: the raw
broker round trip (produce one record, consume it) and a raw Redis ``SET``.

``max_sustained_msgs_per_s`` walks a ladder of offered rates and keeps the highest one at which
the pipeline kept up: ingest received at least 90 % of the offered trades and the consumer's lag,
sampled through the step, never exceeded half a second's worth of trades, and its books balanced.

Every run's books are balanced as ``cryptopipe up`` balances them (:class:`cryptopipe.cli.up.Books`):
each trade ingest published is written to Redis, stale or dead-lettered, or it is ``unwritten``.
The JSON carries ``unwritten``, ``lost`` and the main run's ``reconciliation``; when the main run's
books do not balance, one line says so and the exit status is 3, as ``up``'s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from cryptopipe.cli import up
from cryptopipe.infra import KafkaEndpoint, RedisEndpoint, resolve_kafka, resolve_redis
from cryptopipe.ingest.topics import ensure_topics
from cryptopipe.observability import exact_percentiles_ms
from cryptopipe.schemas import KafkaSettings, RedisSettings, TopicSpec
from cryptopipe.store.bench import measure_redis_set_floor


def _progress(text: str) -> None:
    print(f"bench prices: {text}", file=sys.stderr, flush=True)


def measure_broker_rtt(kafka: KafkaEndpoint, samples: int) -> list[float]:
    """Produce one record and consume it back, ``samples`` times; round trips in ms."""
    topic = f"bench-floor-{uuid.uuid4().hex[:8]}"
    config = kafka.settings.client_config()
    producer = Producer({**config, "linger.ms": 0, "acks": "all", "enable.idempotence": True})
    consumer = Consumer(
        {
            **config,
            "group.id": topic,
            "fetch.wait.max.ms": 1,
            "fetch.min.bytes": 1,
            "enable.auto.commit": False,
        }
    )
    ensure_topics(kafka.settings, [TopicSpec(topic, partitions=1)])
    try:
        producer.produce(topic, b"warm-up", partition=0)
        producer.flush(30)
        consumer.assign([TopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + 30
        while consumer.poll(0.5) is None:
            if time.monotonic() > deadline:
                raise RuntimeError("broker floor: the warm-up record never came back")
        rtts = []
        for i in range(samples):
            start = time.perf_counter_ns()
            producer.produce(topic, str(i).encode(), partition=0)
            producer.poll(0)
            message = None
            while message is None or message.error() is not None:
                message = consumer.poll(5.0)
                if message is None:
                    raise RuntimeError("broker floor: a record did not come back within 5 s")
            rtts.append((time.perf_counter_ns() - start) / 1e6)
        return rtts
    finally:
        consumer.close()
        producer.flush(5)


def _pct(values_ms: Sequence[float]) -> dict[str, float | None]:
    return exact_percentiles_ms([round(v * 1000) for v in values_ms])


def _up_args(rate: float, base: argparse.Namespace) -> argparse.Namespace:
    return up.build_parser().parse_args(
        [
            "--source",
            "replay",
            "--rate",
            str(rate),
            "--symbols",
            base.symbols,
            "--seed",
            str(base.seed),
            "--metrics-base-port",
            "0",
            # The prices path alone: the Spark job would share the same cores (see --with-alerting).
            *([] if base.with_alerting else ["--no-alerting"]),
            "--no-dashboard",
            "--no-prometheus",
        ]
    )


def run_pipeline(
    rate: float,
    seconds: float,
    *,
    base: argparse.Namespace,
    kafka: KafkaEndpoint,
    redis: RedisEndpoint,
    workdir: Path,
    sample_lag: bool = False,
) -> dict[str, Any]:
    """One pipeline run at an offered rate; returns counts, lag samples and latency samples."""
    samples_path = workdir / f"latency-{uuid.uuid4().hex[:6]}.json"
    prefix = f"bench-{uuid.uuid4().hex[:6]}-"
    with contextlib.ExitStack() as stack:
        pipeline = up.Pipeline(
            _up_args(rate, base),
            stack,
            workdir,
            extra_args={
                "replay-exchange": ["--no-burst"],
                "prices-consumer": ["--latency-samples", str(samples_path)],
            },
            extra_env={"KAFKA_TOPIC_PREFIX": prefix, "REDIS_KEY_PREFIX": f"cryptopipe:{prefix}"},
        )
        pipeline.use_servers(kafka, redis)
        ws_url, rest_url = pipeline.start_exchange()
        pipeline.start_services(ws_url, rest_url)
        started = time.monotonic()
        max_lag = 0.0
        while (elapsed := time.monotonic() - started) < seconds:
            time.sleep(0.5)
            if sample_lag:
                max_lag = max(max_lag, pipeline.scrape("prices-consumer").total("cryptopipe_consumer_lag"))
            dead = pipeline.dead_service()
            if dead is not None:
                raise RuntimeError(f"{dead.name} died: {dead.log_tail()}")
        pipeline.drain()
        books = pipeline.books()
        summary = pipeline.summary(elapsed, books)
    latency_us = json.loads(samples_path.read_text()) if samples_path.exists() else []
    if isinstance(latency_us, dict):
        latency_us = latency_us.get("samples_us", [])
    return {
        "summary": summary,
        "books": books,
        "elapsed_s": elapsed,
        "max_lag": max_lag,
        "latency_us": latency_us,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="cryptopipe bench prices",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rate", type=float, default=2000.0, help="offered trades/s (default 2000)")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds at --rate (default 20)")
    parser.add_argument("--json", type=Path, dest="json_path", help="write the results here")
    parser.add_argument("--symbols", default="btcusdt,ethusdt")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--ladder",
        default="2000,5000,10000,20000,30000,40000",
        help="offered rates for max_sustained_msgs_per_s; empty string skips it",
    )
    parser.add_argument("--step-seconds", type=float, default=6.0)
    parser.add_argument("--floor-samples", type=int, default=500)
    parser.add_argument(
        "--with-alerting",
        action="store_true",
        help="run the Spark alert job beside the prices path (the whole pipeline's figure)",
    )
    args = parser.parse_args(argv)

    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory(prefix="cryptopipe-bench-") as tmp:
        kafka = resolve_kafka(KafkaSettings(), stack=stack)
        redis = resolve_redis(RedisSettings(), stack=stack)
        _progress(f"broker {kafka}; redis {redis}")
        _progress(f"floors: {args.floor_samples} broker round trips and Redis SETs")
        broker_rtt = measure_broker_rtt(kafka, args.floor_samples)
        redis_set = measure_redis_set_floor(redis.url.get_secret_value(), args.floor_samples)
        _progress(f"pipeline at {args.rate:.0f} msg/s for {args.duration:.0f} s")
        main_run = run_pipeline(
            args.rate, args.duration, base=args, kafka=kafka, redis=redis, workdir=Path(tmp)
        )
        sustained: list[dict[str, Any]] = []
        best = 0.0
        for rate in [float(r) for r in args.ladder.split(",") if r.strip()]:
            _progress(f"ladder step {rate:.0f} msg/s for {args.step_seconds:.0f} s")
            step = run_pipeline(
                rate,
                args.step_seconds,
                base=args,
                kafka=kafka,
                redis=redis,
                workdir=Path(tmp),
                sample_lag=True,
            )
            received = step["summary"]["trades_received"]
            offered = rate * step["elapsed_s"]
            step_books: up.Books = step["books"]
            kept_up = received >= 0.9 * offered and step["max_lag"] <= rate * 0.5 and step_books.balanced
            sustained.append(
                {
                    "offered_msgs_per_s": rate,
                    "received": received,
                    "received_msgs_per_s": round(received / step["elapsed_s"], 1),
                    "max_lag": step["max_lag"],
                    "unwritten": step_books.unwritten,
                    "kept_up": kept_up,
                }
            )
            _progress(
                f"  received {received} ({received / step['elapsed_s']:.0f}/s), max lag "
                f"{step['max_lag']:.0f}, unwritten {step_books.unwritten}: "
                f"{'kept up' if kept_up else 'fell behind'}"
            )
            if not kept_up:
                break
            best = rate

    summary = main_run["summary"]
    books: up.Books = main_run["books"]
    system = exact_percentiles_ms(main_run["latency_us"])
    floor_broker = _pct(broker_rtt)
    floor_redis = _pct(redis_set)
    result: dict[str, Any] = {
        "broker": summary["broker"],
        "redis": summary["redis"],
        "offered_rate_msgs_per_s": args.rate,
        "duration_s": round(main_run["elapsed_s"], 2),
        "trades_received": summary["trades_received"],
        "trades_published": summary["trades_published"],
        "prices_written": summary["prices_written"],
        "unwritten": books.unwritten,
        "lost": books.lost,
        "reconciliation": books.as_dict(),
        "system_latency_ms": system,
        "system_latency_samples": len(main_run["latency_us"]),
        "e2e_latency_ms": summary["e2e_latency_ms"],
        "throughput_msgs_per_s": round(summary["prices_written"] / main_run["elapsed_s"], 1),
        "max_sustained_msgs_per_s": best,
        "ladder": sustained,
        "floor_broker_rtt_ms": {"p50": floor_broker["p50"], "p99": floor_broker["p99"]},
        "floor_redis_set_ms": {"p50": floor_redis["p50"], "p99": floor_redis["p99"]},
        "ratio_p99_to_floor": (
            round(system["p99"] / floor_broker["p99"], 2) if system["p99"] and floor_broker["p99"] else None
        ),
    }
    for key in (
        "system_latency_ms",
        "throughput_msgs_per_s",
        "max_sustained_msgs_per_s",
        "floor_broker_rtt_ms",
        "floor_redis_set_ms",
        "ratio_p99_to_floor",
        "unwritten",
        "lost",
    ):
        print(f"{key:28} {result[key]}")
    if args.json_path is not None:
        args.json_path.parent.mkdir(parents=True, exist_ok=True)
        args.json_path.write_text(json.dumps(result, indent=2) + "\n")
    _progress(books.line())
    return 0 if books.balanced else up.EXIT_UNBALANCED
