"""The alerting bench's load: trades at a fixed rate that cross each window's threshold, and
what was produced when (to tell when each alert could first be raised)."""

from __future__ import annotations

import bisect
import logging
import random
import statistics
import threading
import time
from collections.abc import Sequence
from dataclasses import InitVar, dataclass, field
from decimal import Decimal

from cryptopipe.schemas import (
    KafkaSettings,
    Trade,
    encode,
    encode_key,
)
from cryptopipe.schemas.topics import PARTITIONER

logger = logging.getLogger(__name__)


def percentiles(values: Sequence[float]) -> dict[str, float | int | None]:
    """p50/p95/p99/max/mean (nearest-rank) of ``values``."""
    if not values:
        return {"count": 0, "p50": None, "p95": None, "p99": None, "max": None, "mean": None}
    ordered = sorted(values)

    def rank(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, int(-(-q * len(ordered) // 1)) - 1))]

    return {
        "count": len(ordered),
        "p50": rank(0.50),
        "p95": rank(0.95),
        "p99": rank(0.99),
        "max": ordered[-1],
        "mean": statistics.fmean(ordered),
    }


def percentiles_ms(values: Sequence[float]) -> dict[str, float | None]:
    """``{p50, p95, p99}`` in milliseconds of values in seconds (None when there are none)."""
    stats = percentiles(values)
    return {
        k: None if stats[k] is None else round(float(stats[k] or 0) * 1000, 1) for k in ("p50", "p95", "p99")
    }


@dataclass
class Produced:
    """Per symbol, event times (µs: a trade's, or a book update's) in produce order and the
    matching receive times."""

    times: dict[str, list[int]] = field(default_factory=dict)
    receives: dict[str, list[int]] = field(default_factory=dict)
    count: int = 0
    last_us: int = 0

    def add(self, symbol: str, time_us: int, receive_us: int) -> None:
        self.times.setdefault(symbol, []).append(time_us)
        self.receives.setdefault(symbol, []).append(receive_us)
        self.count += 1
        self.last_us = time_us

    def trigger(self, symbol: str, window_end_us: int, delay_ms: int) -> int | None:
        """Receive time of the symbol's first record at window end + delay or later: it closes
        the window (with ``delay_ms`` 0 and a level rule's ``window_end_us``, start + hold: the
        record that had kept the condition true for the hold)."""
        times = self.times.get(symbol, [])
        index = bisect.bisect_left(times, window_end_us + delay_ms * 1000)
        return self.receives[symbol][index] if index < len(times) else None


@dataclass(eq=False, repr=False)
class TradeLoad(threading.Thread):
    """Trades at a fixed rate, round-robin over symbols; each window gets a threshold crossing."""

    kafka: InitVar[KafkaSettings]
    topic: str
    rate: float
    seconds: float
    symbols: list[str]
    window_us: int
    move: Decimal
    produced: Produced = field(default_factory=Produced, init=False)
    error: BaseException | None = field(default=None, init=False)

    def __post_init__(self, kafka: KafkaSettings) -> None:
        super().__init__(name="bench-producer", daemon=True)
        from confluent_kafka import Producer

        self.producer = Producer(
            {**kafka.client_config(), "linger.ms": 1, "enable.idempotence": True, "partitioner": PARTITIONER}
        )

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:
            self.error = exc

    def _run(self) -> None:
        rng = random.Random(7)
        base = {symbol: Decimal(100 + 10 * i) for i, symbol in enumerate(self.symbols)}
        ids = dict.fromkeys(self.symbols, 0)
        interval = 1.0 / self.rate
        started = time.perf_counter()
        n = 0
        while True:
            due = started + n * interval
            now = time.perf_counter()
            if now - started >= self.seconds:
                break
            if due > now:
                time.sleep(due - now)
            symbol = self.symbols[n % len(self.symbols)]
            now_us = time.time_ns() // 1000
            into = (now_us % self.window_us) / self.window_us
            # Flat in the first half of each window, then up (or down) by twice the threshold.
            up = (now_us // self.window_us + self.symbols.index(symbol)) % 2 == 0
            level = base[symbol] * (1 + (self.move if up else -self.move)) if into >= 0.5 else base[symbol]
            price = (level * Decimal(1 + rng.uniform(-1e-5, 1e-5))).quantize(Decimal("0.0001"))
            ids[symbol] += 1
            item = Trade(
                symbol=symbol,
                trade_id=ids[symbol],
                price=price,
                quantity=Decimal("0.01"),
                buyer_is_maker=False,
                trade_time_us=now_us,
                event_time_us=now_us,
                receive_time_us=now_us,
                kind="trade",
            )
            while True:
                try:
                    self.producer.produce(self.topic, encode(item), encode_key(symbol))
                    break
                except BufferError:
                    self.producer.poll(0.01)
            self.producer.poll(0)
            self.produced.add(symbol, now_us, now_us)
            n += 1
        self.producer.flush(30)
