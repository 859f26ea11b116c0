"""The alerting bench's book load: ``book-updates`` records, as ingest publishes them, whose books
cross the book rules, and the book alerts' latencies and check against the reference model.

Each book symbol gets a ``reset`` (one level a side), then ``update`` records at a fixed rate
(round-robin over the symbols, ``event_time_us`` = ``receive_time_us`` = now, continuous update
ids), each moving the best bid and ask. In the first half of every window (the shortest mid
rule's, else 5 s) the mid sits at the symbol's base and the spread is narrow; in the second half
the mid is up (or down) by twice the largest mid threshold and the spread is twice the largest
``spread >`` bound. So each window gives every mid rule its move (early and final) and every spread
rule an episode that outlasts a hold shorter than half a window.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Sequence
from dataclasses import InitVar, dataclass, field
from decimal import Decimal
from typing import Any

from cryptopipe.alerting.book_reference import reference_book_alerts
from cryptopipe.alerting.job import AlertingJob
from cryptopipe.alerting.reference import WindowAlert
from cryptopipe.alerting.rules import Rule
from cryptopipe.measure.alert_load import Produced, percentiles_ms
from cryptopipe.measure.floors import ratio
from cryptopipe.schemas import Alert, KafkaSettings, encode_key
from cryptopipe.schemas.book_messages import BookResetRecord, BookUpdateRecord, encode_book, epoch_base
from cryptopipe.schemas.topics import PARTITIONER

BPS = Decimal(10_000)
DEFAULT_WINDOW_US = 5_000_000
NARROW_BPS = Decimal(2)


def book_window_us(rules: Sequence[Rule]) -> int:
    """The load's cycle: the shortest mid rule's window, else 5 s."""
    return min((rule.window_us for rule in rules if rule.metric == "mid"), default=DEFAULT_WINDOW_US)


def wide_spread_bps(rules: Sequence[Rule]) -> Decimal:
    """Twice the largest ``spread >`` bound (at least 10 bps)."""
    bounds = [rule.threshold for rule in rules if rule.metric == "spread" and rule.op == ">"]
    return max([Decimal(10), *(2 * bound for bound in bounds)])


def mid_move(rules: Sequence[Rule]) -> Decimal:
    """Twice the largest mid threshold (0.4 % without mid rules)."""
    return 2 * max((rule.threshold for rule in rules if rule.metric == "mid"), default=Decimal("0.002"))


@dataclass(eq=False, repr=False)
class BookLoad(threading.Thread):
    """``book-updates`` records at ``rate`` per second over ``symbols`` (see the module docstring)."""

    kafka: InitVar[KafkaSettings]
    topic: str
    rate: float
    seconds: float
    symbols: list[str]
    rules: Sequence[Rule]
    produced: Produced = field(default_factory=Produced, init=False)
    records: list[BookResetRecord | BookUpdateRecord] = field(default_factory=list, init=False)
    error: BaseException | None = field(default=None, init=False)

    def __post_init__(self, kafka: KafkaSettings) -> None:
        super().__init__(name="bench-book-producer", daemon=True)
        from confluent_kafka import Producer

        self.producer = Producer(
            {**kafka.client_config(), "linger.ms": 1, "enable.idempotence": True, "partitioner": PARTITIONER}
        )
        self.window_us = book_window_us(self.rules)
        self.wide_bps = wide_spread_bps(self.rules)
        self.move = mid_move(self.rules)
        self._rng = random.Random(11)
        self._touch: dict[str, tuple[Decimal, Decimal]] = {}
        self._ids: dict[str, int] = {}
        self._epoch = epoch_base(time.time_ns() // 1000)

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:
            self.error = exc

    def _touch_at(self, symbol: str, now_us: int) -> tuple[Decimal, Decimal]:
        """The best bid and ask of ``symbol`` at ``now_us`` (see the module docstring)."""
        index = self.symbols.index(symbol)
        base = Decimal(100 + 10 * index)
        second_half = (now_us % self.window_us) * 2 >= self.window_us
        up = (now_us // self.window_us + index) % 2 == 0
        mid = base * (1 + (self.move if up else -self.move)) if second_half else base
        mid *= Decimal(1 + self._rng.uniform(-1e-6, 1e-6))
        half = (self.wide_bps if second_half else NARROW_BPS) / BPS / 2
        return (mid * (1 - half)).quantize(Decimal("0.0001")), (mid * (1 + half)).quantize(Decimal("0.0001"))

    def _quantity(self) -> Decimal:
        return Decimal(self._rng.randint(50, 150)) / 100

    def _send(self, record: BookResetRecord | BookUpdateRecord) -> None:
        while True:
            try:
                self.producer.produce(self.topic, encode_book(record), encode_key(record.symbol))
                break
            except BufferError:
                self.producer.poll(0.01)
        self.producer.poll(0)
        self.records.append(record)

    def _reset(self, symbol: str, now_us: int) -> None:
        bid, ask = self._touch[symbol] = self._touch_at(symbol, now_us)
        self._ids[symbol] = 1000
        self._send(
            BookResetRecord(
                symbol=symbol,
                epoch=self._epoch,
                reason="initial",
                update_id=1000,
                bids=((bid, self._quantity()),),
                asks=((ask, self._quantity()),),
                event_time_us=now_us,
                receive_time_us=now_us,
            )
        )

    def _update(self, symbol: str, now_us: int) -> None:
        old_bid, old_ask = self._touch[symbol]
        bid, ask = self._touch[symbol] = self._touch_at(symbol, now_us)
        bids = ([(old_bid, Decimal(0))] if old_bid != bid else []) + [(bid, self._quantity())]
        asks = ([(old_ask, Decimal(0))] if old_ask != ask else []) + [(ask, self._quantity())]
        update_id = self._ids[symbol] = self._ids[symbol] + 1
        self._send(
            BookUpdateRecord(
                symbol=symbol,
                epoch=self._epoch,
                first_update_id=update_id,
                final_update_id=update_id,
                bids=tuple(bids),
                asks=tuple(asks),
                event_time_us=now_us,
                receive_time_us=now_us,
            )
        )
        self.produced.add(symbol, now_us, now_us)

    def _run(self) -> None:
        for symbol in self.symbols:
            self._reset(symbol, time.time_ns() // 1000)
        interval = 1.0 / self.rate
        started = time.perf_counter()
        n = 0
        while (now := time.perf_counter()) - started < self.seconds:
            due = started + n * interval
            if due > now:
                time.sleep(due - now)
            self._update(self.symbols[n % len(self.symbols)], time.time_ns() // 1000)
            n += 1
        self.producer.flush(30)


def window_alert(alert: Alert) -> WindowAlert:
    """An alert's identity and content, as the reference model gives it."""
    return WindowAlert(
        rule=alert.rule,
        symbol=alert.symbol,
        window_start_us=alert.window_start_us,
        kind=alert.kind,
        window_end_us=alert.window_end_us,
        side=alert.side,
        open=alert.open,
        close=alert.close,
        pct_change=alert.pct_change,
    )


def book_reference_check(
    load: BookLoad, rules: Sequence[Rule], delay_ms: int, written: Sequence[tuple[Alert, int]]
) -> dict[str, int]:
    """The book alerts in Redis (first copies) against :func:`reference_book_alerts` over every
    record the load produced, in order."""
    names = {rule.name for rule in rules if rule.is_book}
    reference = set(reference_book_alerts(load.records, rules, delay_ms))
    got = {window_alert(alert) for alert, _ in written if alert.rule in names}
    return {
        "reference": len(reference),
        "raised": len(got),
        "matching": len(reference & got),
        "missing": len(reference - got),
        "unexpected": len(got - reference),
    }


def book_latencies(
    load: BookLoad,
    rules: Sequence[Rule],
    delay_ms: int,
    written: Sequence[tuple[Alert, int]],
    measure_from_us: int,
) -> dict[str, Any]:
    """Book alert latencies (ms), each against the update that decided the alert:

    - early (mid rules): alert in Redis minus the receive time of the update that crossed the
      threshold (the lane's ``trigger_receive_time_us``);
    - final, mid rules: minus the receive time of the symbol's first update at window end + delay
      or later (it closes the window);
    - final, level rules: minus the receive time of the first update at or after the episode's
      start + hold (``window_end_us``): the one that had kept the condition true for the hold.
    """
    by_name = {rule.name: rule for rule in rules if rule.is_book}
    early: list[float] = []
    moves: list[float] = []
    levels: list[float] = []
    without_trigger = 0
    for alert, written_us in written:
        rule = by_name.get(alert.rule)
        if rule is None or alert.window_start_us < measure_from_us:
            continue
        if alert.kind == "early":
            if alert.trigger_receive_time_us is None:
                without_trigger += 1
            else:
                early.append((written_us - alert.trigger_receive_time_us) / 1e6)
            continue
        trigger = load.produced.trigger(alert.symbol, alert.window_end_us, 0 if rule.is_level else delay_ms)
        if trigger is None:
            without_trigger += 1
            continue
        (levels if rule.is_level else moves).append((written_us - trigger) / 1e6)
    return {
        "book_early_alert_latency_ms": percentiles_ms(early),
        "book_final_alert_latency_ms": percentiles_ms(moves + levels),
        "book_level_alert_latency_ms": percentiles_ms(levels),
        "book_mid_final_alert_latency_ms": percentiles_ms(moves),
        "book_alerts_measured": {
            "early": len(early),
            "final": len(moves) + len(levels),
            "level": len(levels),
            "without_trigger": without_trigger,
        },
    }


def await_book_alerts(
    job: AlertingJob, load: BookLoad, rules: Sequence[Rule], delay_ms: int, written: list[tuple[Alert, int]]
) -> None:
    """Until the express lane read every book record (when it runs) and Redis holds every book
    alert the reference model raises over them (30 s at most: the report says what is missing)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        job.await_termination(0.2)
        lane = job.express
        if lane is not None and lane.stats.book_records < len(load.records):
            continue
        if book_reference_check(load, rules, delay_ms, list(written))["missing"] == 0:
            return


def book_report(
    load: BookLoad,
    rules: Sequence[Rule],
    delay_ms: int,
    written: Sequence[tuple[Alert, int]],
    measure_from_us: int,
    floor_p99: float | None,
    records_read: int | None,
) -> dict[str, Any]:
    """The bench's book figures: the load, the latencies against the deciding update, their ratios
    to the broker floor's p99, and the check against the reference model."""
    found = book_latencies(load, rules, delay_ms, written, measure_from_us)
    return {
        "book_load": {
            "rate": load.rate,
            "symbols": load.symbols,
            "records_produced": len(load.records),
            "records_read_by_express": records_read,
        },
        **found,
        "ratio_book_early_p99_to_floor": ratio(found["book_early_alert_latency_ms"]["p99"], floor_p99),
        "ratio_book_final_p99_to_floor": ratio(found["book_final_alert_latency_ms"]["p99"], floor_p99),
        "book_alerts": book_reference_check(load, rules, delay_ms, written),
    }


def book_lines(result: dict[str, Any]) -> list[str]:
    """The book figures of the bench's printout (none without book load)."""
    if result.get("book_load") is None:
        return []
    return [
        f"  book early alert latency (crossing update -> Redis), ms: {result['book_early_alert_latency_ms']}",
        f"  book final alert latency (deciding update -> Redis), ms: {result['book_final_alert_latency_ms']}",
        f"    of which level rules, ms: {result['book_level_alert_latency_ms']}",
        f"  book p99 / broker floor p99: early {result['ratio_book_early_p99_to_floor']}, "
        f"final {result['ratio_book_final_p99_to_floor']}",
        f"  book alerts against the reference model: {result['book_alerts']}",
    ]
