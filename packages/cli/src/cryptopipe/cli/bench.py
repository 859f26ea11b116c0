"""``cryptopipe bench <name>``: benchmark commands. Each prints p50/p95/p99 and throughput, and
writes JSON with ``--json PATH``. Figures are reported next to a floor measured in the same run."""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import uuid
from collections.abc import Sequence

from confluent_kafka import Consumer, Producer, TopicPartition

from cryptopipe.observability import exact_percentiles_ms
from cryptopipe.runtime import ensure_topics
from cryptopipe.schemas import KafkaSettings, TopicSpec

BENCHES = {
    "prices": ("cryptopipe.cli.bench_prices:main", "replay -> ingest -> Kafka -> consumer -> Redis"),
    "alerting": ("cryptopipe.cli.bench_alerting:main", "Kafka -> Spark alert job -> alerts"),
    "ingest-producer": (
        "cryptopipe.cli.bench_ingest:main",
        "produce -> delivery report per linger.ms/compression",
    ),
    "codec": ("cryptopipe.cli.bench_codec:main", "wire-format encode/decode: JSON vs MessagePack"),
    "faults": ("cryptopipe.cli.bench_faults:main", "five faults on the prices path: trades lost/duplicated"),
}


def bench_parser(name: str, doc: str | None) -> argparse.ArgumentParser:
    """The parser of ``cryptopipe bench <name>``, whose ``--help`` shows ``doc`` as it is laid out."""
    return argparse.ArgumentParser(
        prog=f"cryptopipe bench {name}", description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def measure_broker_rtt(kafka: KafkaSettings, samples: int) -> list[float]:
    """Produce one record and consume it back, ``samples`` times; round trips in ms."""
    topic = f"bench-floor-{uuid.uuid4().hex[:8]}"
    config = kafka.client_config()
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
    ensure_topics(kafka, [TopicSpec(topic, partitions=1)])
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


def floor_ms(values_ms: Sequence[float]) -> dict[str, float | None]:
    """``{p50, p99}`` of floor round trips in ms: the fields every bench reports its floors with."""
    stats = exact_percentiles_ms([round(v * 1000) for v in values_ms])
    return {"p50": stats["p50"], "p99": stats["p99"]}


def ratio(value: float | None, floor: float | None) -> float | None:
    """``value / floor`` to 2 places, None when either is missing (or the floor is 0)."""
    return round(value / floor, 2) if value and floor else None


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in BENCHES:
        names = "\n".join(f"  {name:16} {help_}" for name, (_, help_) in BENCHES.items())
        wanted = bool(args) and args[0] in ("-h", "--help")
        print(
            f"usage: cryptopipe bench {{{','.join(BENCHES)}}} [options]\n\n{names}",
            file=sys.stdout if wanted else sys.stderr,
        )
        return 0 if wanted else 2
    module_name, _, function = BENCHES[args[0]][0].partition(":")
    handler = getattr(importlib.import_module(module_name), function)
    return int(handler(args[1:]))
