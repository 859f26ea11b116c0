"""The floors every bench reports its figures against, measured in the same run: the raw broker
round trip (idle, and at the bench's rate), plus the parser every bench command shares."""

from __future__ import annotations

import argparse
import contextlib
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from cryptopipe.observability import exact_percentiles_ms
from cryptopipe.runtime import ensure_topics, plain_text
from cryptopipe.runtime.kafka import LOW_LATENCY_FETCH, poll_batch
from cryptopipe.schemas import KafkaSettings, TopicSpec

FLOOR_SAMPLES = 2000
"""Round trips per idle floor. Its p99 is then the 20th-worst one: over 500 (the 5th-worst) the warm
broker's p99 moved 0.5-3.7 ms between runs on the 2-core machine, and every ratio with it."""


def bench_parser(name: str, doc: str | None) -> argparse.ArgumentParser:
    """The parser of ``cryptopipe bench <name>``, whose ``--help`` shows ``doc`` as it is laid out."""
    return argparse.ArgumentParser(
        prog=f"cryptopipe bench {name}",
        description=plain_text(doc),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


_PING_PONG_FETCH: Mapping[str, Any] = {"fetch.wait.max.ms": 1, "fetch.min.bytes": 1}
"""The idle floor's consumer: one record at a time, so an empty fetch is answered within 1 ms."""


@contextlib.contextmanager
def _round_trip_clients(
    kafka: KafkaSettings, fetch: Mapping[str, Any] = _PING_PONG_FETCH
) -> Iterator[tuple[str, Producer, Consumer]]:
    """A fresh one-partition topic with a raw producer (linger 0, idempotent, ``acks=all``) and a
    consumer at its start (``fetch`` settings), once a first record has gone round: the floors'
    bare clients."""
    topic = f"bench-floor-{uuid.uuid4().hex[:8]}"
    config = kafka.client_config()
    producer = Producer({**config, "linger.ms": 0, "acks": "all", "enable.idempotence": True})
    consumer = Consumer({**config, **fetch, "group.id": topic, "enable.auto.commit": False})
    ensure_topics(kafka, [TopicSpec(topic, partitions=1)])
    try:
        producer.produce(topic, b"0", partition=0)
        producer.flush(30)
        consumer.assign([TopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + 30
        while consumer.poll(0.5) is None:
            if time.monotonic() > deadline:
                raise RuntimeError("broker floor: the warm-up record never came back")
        yield topic, producer, consumer
    finally:
        consumer.close()
        producer.flush(5)


def measure_broker_rtt(kafka: KafkaSettings, samples: int) -> list[float]:
    """Produce one record and consume it back, ``samples`` times; round trips in ms."""
    with _round_trip_clients(kafka) as (topic, producer, consumer):
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


def measure_broker_rtt_at_rate(kafka: KafkaSettings, rate: float, seconds: float) -> list[float]:
    """The same raw round trip under load: ``rate`` records/s for ``seconds``, produced on a steady
    clock while a thread consumes them; each record's time from ``produce()`` to consumed, in ms.

    This is what the broker alone gives at the pipeline's rate on this machine, with no pipeline
    code on the path. The consumer fetches as the prices consumer does (``LOW_LATENCY_FETCH``):
    the idle floor's 1 ms fetch wait would add a thousand empty fetches a second to the broker's
    load and so make this floor, and every ratio to it, look better than the broker is.
    """
    if rate <= 0 or seconds <= 0:
        raise ValueError(f"the floor at rate needs a rate and a time above 0, got {rate}/s for {seconds} s")
    count = max(1, round(rate * seconds))
    quiet_s = max(5.0, 2.0 / rate)  # longer than any gap the producer leaves on purpose
    rtts: list[float] = []
    failure: list[BaseException] = []

    def consume(consumer: Consumer) -> None:
        try:
            while len(rtts) < count:
                batch = poll_batch(consumer, 10_000, quiet_s)
                if not batch:
                    return  # said below, once the producer is done
                now = time.perf_counter_ns()
                for message in batch:
                    if message.error() is None:
                        rtts.append((now - int(message.value() or b"")) / 1e6)
        except BaseException as exc:  # raised again in the producing thread
            failure.append(exc)

    with _round_trip_clients(kafka, LOW_LATENCY_FETCH) as (topic, producer, consumer):
        reader = threading.Thread(target=consume, args=(consumer,), name="floor-at-rate", daemon=True)
        reader.start()
        start = time.perf_counter()
        for i in range(count):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            producer.produce(topic, str(time.perf_counter_ns()).encode(), partition=0)
            producer.poll(0)
        reader.join(timeout=seconds + 30)
    if failure:
        raise failure[0]
    if len(rtts) < count:
        raise RuntimeError(f"broker floor at rate: {count - len(rtts)} of {count} records did not come back")
    return rtts


def floor_ms(values_ms: Sequence[float]) -> dict[str, float | None]:
    """``{p50, p99}`` of floor round trips in ms: the fields every bench reports its floors with."""
    stats = exact_percentiles_ms([round(v * 1000) for v in values_ms])
    return {"p50": stats["p50"], "p99": stats["p99"]}


def ratio(value: float | None, floor: float | None) -> float | None:
    """``value / floor`` to 2 places, None when either is missing (or the floor is 0)."""
    return round(value / floor, 2) if value and floor else None
