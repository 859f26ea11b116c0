"""Producer latency benchmark: produce -> delivery report, for a few producer settings.

Runs the ingest producer configuration (idempotent, ``acks=all``) at a fixed message rate and
reports p50/p95/p99/max of the time from ``produce()`` to the delivery report and the delivered
throughput, per ``linger.ms`` and compression. The chosen defaults in
:class:`~cryptopipe.ingest.settings.IngestSettings` come from this. The floor is the raw broker
round trip (``floor_broker_rtt_ms``, as ``bench prices`` measures it), taken after the sweep on the
same broker; each result's ``ratio_p99_to_floor`` divides its p99 by the floor's. Usage::

    cryptopipe bench ingest-producer --bootstrap 127.0.0.1:9092 --rate 2000 --seconds 5 --json out.json

Without ``--bootstrap`` it uses the broker ``cryptopipe up`` would (``KAFKA_BOOTSTRAP_SERVERS``,
else a local one started through ``cryptopipe.infra``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from cryptopipe.infra import resolve_kafka
from cryptopipe.ingest.publisher import producer_config
from cryptopipe.ingest.settings import IngestSettings
from cryptopipe.measure.floors import FLOOR_SAMPLES, floor_ms, measure_broker_rtt, ratio
from cryptopipe.runtime import ensure_topics, write_json_atomic
from cryptopipe.schemas import KafkaSettings, TopicSpec, settings_of


@dataclass(frozen=True)
class LatencyResult:
    linger_ms: float
    compression: str
    rate: int
    sent: int
    delivered: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    throughput_msgs_per_s: float
    load_avg_1m: float


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def measure(
    kafka: KafkaSettings, topic: str, *, linger_ms: float, compression: str, rate: int, seconds: float
) -> LatencyResult:
    """Produce ``rate`` msg/s for ``seconds``; time each produce() -> delivery report."""
    settings = settings_of(IngestSettings, linger_ms=linger_ms, compression=compression)
    producer = Producer(producer_config(kafka, settings))
    latencies: list[float] = []
    payload = b'{"v":1,"symbol":"BTCUSDT","trade_id":3735683259,"price":"61837.63","quantity":"0.02"}' * 2

    def delivered(sent_ns: int) -> Any:
        def callback(error: KafkaError | None, _message: Message) -> None:
            if error is None:
                latencies.append((time.perf_counter_ns() - sent_ns) / 1e6)

        return callback

    # warm-up: connection, metadata, producer id
    producer.produce(topic, payload, b"BTCUSDT")
    producer.flush(10)
    total = int(rate * seconds)
    interval_ns = 1e9 / rate
    start = time.perf_counter_ns()
    for i in range(total):
        due = start + i * interval_ns
        while (now := time.perf_counter_ns()) < due:
            producer.poll(min(0.0005, (due - now) / 1e9))
        producer.produce(topic, payload, b"BTCUSDT" if i % 2 else b"ETHUSDT", on_delivery=delivered(now))
        producer.poll(0)
    producer.flush(30)
    elapsed_s = (time.perf_counter_ns() - start) / 1e9
    values = sorted(latencies)
    return LatencyResult(
        linger_ms=linger_ms,
        compression=compression,
        rate=rate,
        sent=total,
        delivered=len(values),
        p50_ms=round(_percentile(values, 0.50), 3),
        p95_ms=round(_percentile(values, 0.95), 3),
        p99_ms=round(_percentile(values, 0.99), 3),
        max_ms=round(values[-1], 3) if values else float("nan"),
        mean_ms=round(statistics.fmean(values), 3) if values else float("nan"),
        throughput_msgs_per_s=round(len(values) / elapsed_s, 1),
        load_avg_1m=os.getloadavg()[0],
    )


_HEADER = (
    f"{'linger.ms':>9} {'compression':>11} {'delivered':>9} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}"
    f" {'max ms':>8} {'msg/s':>8} {'load':>5}"
)


def _row(r: LatencyResult) -> str:
    row = f"{r.linger_ms:>9g} {r.compression:>11} {r.delivered:>9} {r.p50_ms:>8.2f} {r.p95_ms:>8.2f}"
    return row + f" {r.p99_ms:>8.2f} {r.max_ms:>8.2f} {r.throughput_msgs_per_s:>8.0f} {r.load_avg_1m:>5.1f}"


def _print_medians(results: Sequence[LatencyResult]) -> None:
    """Each setting's median p50 and p99 over the rounds."""
    print("median over rounds:")
    keys = dict.fromkeys((r.linger_ms, r.compression) for r in results)
    for linger, compression in keys:
        runs = [r for r in results if (r.linger_ms, r.compression) == (linger, compression)]
        p50 = statistics.median(r.p50_ms for r in runs)
        p99 = statistics.median(r.p99_ms for r in runs)
        print(f"{linger:>9g} {compression:>11} {'':>9} {p50:>8.2f} {p99:>8.2f}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cryptopipe bench ingest-producer", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--bootstrap", default="", help="Kafka bootstrap servers (default: start a local broker)"
    )
    parser.add_argument("--rate", type=int, default=2000, help="messages per second")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each run")
    parser.add_argument("--linger", default="0,1,5,20", help="comma-separated linger.ms values")
    parser.add_argument("--compression", default="none,lz4", help="comma-separated compression types")
    parser.add_argument("--repeat", type=int, default=1, help="rounds over all settings (interleaved)")
    parser.add_argument(
        "--floor-samples",
        type=int,
        default=FLOOR_SAMPLES,
        help=f"broker round trips for the floor (default {FLOOR_SAMPLES})",
    )
    parser.add_argument("--json", default="", help="write the results to this JSON file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with contextlib.ExitStack() as stack:
        bootstrap = args.bootstrap
        broker_kind = "configured"
        if bootstrap:
            kafka = settings_of(KafkaSettings, bootstrap_servers=bootstrap)
        else:
            endpoint = resolve_kafka(KafkaSettings(), stack=stack)
            kafka, broker_kind = endpoint.settings, endpoint.kind
            bootstrap = kafka.bootstrap_servers
        topic = f"bench-ingest-{uuid.uuid4().hex[:8]}"
        ensure_topics(kafka, [TopicSpec(topic, 3)])
        results = []
        print(f"broker: {broker_kind} at {bootstrap}; {args.rate} msg/s for {args.seconds} s per run")
        print(_HEADER)
        for round_ in range(args.repeat):
            for compression in args.compression.split(","):
                for linger in (float(v) for v in args.linger.split(",")):
                    r = measure(
                        kafka,
                        topic,
                        linger_ms=linger,
                        compression=compression,
                        rate=args.rate,
                        seconds=args.seconds,
                    )
                    results.append(r)
                    print(f"{_row(r)}  (round {round_ + 1})", flush=True)
        if args.repeat > 1:
            _print_medians(results)
        floor = floor_ms(measure_broker_rtt(kafka, args.floor_samples))
        print(f"floor (raw broker round trip, ms): {floor}")
        report = {
            "broker": broker_kind,
            "floor_broker_rtt_ms": floor,
            "results": [asdict(r) | {"ratio_p99_to_floor": ratio(r.p99_ms, floor["p99"])} for r in results],
        }
        if args.json:
            write_json_atomic(args.json, report, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
