"""Driver side of every micro-batch: closed windows -> alerts -> the ``alerts`` topic.

Delivery is at least once: a micro-batch whose alerts the broker did not acknowledge raises, the
query stops before committing it, and the restarted query replays the same offsets from the
checkpoint and so computes the same alerts again. Duplicates on the topic are therefore possible
after a failure; the alerts consumer drops them with its idempotency key per (rule, symbol,
window, kind), which is what makes the Redis feed exactly-once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from cryptopipe.alerting.errors import AlertPublishError
from cryptopipe.alerting.listener import watermark_us
from cryptopipe.alerting.plan import OBSERVATION, trigger_column
from cryptopipe.alerting.reference import make_alert
from cryptopipe.alerting.rules import Rule
from cryptopipe.runtime import rate_limited_logger
from cryptopipe.schemas import Alert, KafkaSettings, encode, encode_key
from cryptopipe.schemas.topics import PARTITIONER

logger = logging.getLogger(__name__)

_TRIGGER_MEMORY = 64  # windows per length kept for late lookups


class TriggerTracker:
    """Which ingested trade let the watermark pass each window end (from per-batch observations).

    See :func:`cryptopipe.alerting.plan.observe_input`. Exact when a micro-batch moves the watermark
    past at most one window end per window length (always, unless the job is catching up on a
    backlog, when earlier ends share the later one's trigger).
    """

    def __init__(self, window_lengths_us: Iterable[int]) -> None:
        self._lengths = sorted(set(window_lengths_us))
        self._passed: dict[int, int] = {}
        self._triggers: dict[tuple[int, int], int] = {}
        self._last_batch = -1
        self._lock = threading.Lock()

    def absorb(
        self, batch_id: int, observed: Mapping[str, Any], watermark_before_us: int | None = None
    ) -> None:
        """Take one batch's observation (``observedMetrics[OBSERVATION]`` as a dict).

        ``watermark_before_us`` is the watermark the batch ran with (its progress's
        ``eventTime.watermark``): window ends after it and up to the new one passed in this batch.
        """
        with self._lock:
            if batch_id <= self._last_batch:
                return
            self._last_batch = batch_id
            for length in self._lengths:
                figure = observed.get(trigger_column(length))
                if figure is None:
                    continue
                end = -int(_field(figure, "g")) * length
                receive_us = int(_field(figure, "r"))
                passed = self._passed.get(length)
                if passed is not None and end <= passed:
                    continue
                first = end - _TRIGGER_MEMORY * length
                if passed is not None:
                    first = max(first, passed + length)
                if watermark_before_us is not None:
                    first = max(first, (watermark_before_us // length + 1) * length)
                for window_end in range(min(first, end), end + length, length):
                    self._triggers[(length, window_end)] = receive_us
                self._passed[length] = end
                oldest = end - _TRIGGER_MEMORY * length
                for key in [k for k in self._triggers if k[0] == length and k[1] < oldest]:
                    del self._triggers[key]

    def trigger_for(self, window_us: int, window_end_us: int) -> int | None:
        with self._lock:
            return self._triggers.get((window_us, window_end_us))

    @property
    def last_batch(self) -> int:
        return self._last_batch


def _field(row: Any, name: str) -> Any:
    if isinstance(row, Mapping):
        return row[name]
    return getattr(row, name)


def observation_of(progress: Any) -> tuple[int, dict[str, Any], int | None] | None:
    """``(batch_id, figures, watermark_before_us)`` from a StreamingQueryProgress, or None."""
    metrics = progress["observedMetrics"]
    if not metrics or OBSERVATION not in metrics:
        return None
    row = metrics[OBSERVATION]
    figures = row.asDict(recursive=False) if hasattr(row, "asDict") else dict(row)
    return int(progress["batchId"]), figures, watermark_us(progress)


def windows_to_alerts(
    rows: Iterable[Any], rules: Mapping[str, Rule], tracker: TriggerTracker | None, now_us: int
) -> list[Alert]:
    """Apply the final rules' thresholds (exactly, in Decimal) and build the wire messages.

    (A level rule's rows are decided already: the operator saw the metric stay beyond its bound.)
    """
    alerts: list[Alert] = []
    for row in rows:
        if row["kind"] == "late":
            continue
        rule = rules[row["rule"]]
        symbol = row["symbol"]
        open_price, close_price = Decimal(row["open"]), Decimal(row["close"])
        kind = row["kind"]
        if kind == "final" and not rule.is_level and not rule.crosses(symbol, open_price, close_price):
            continue
        start_us = int(row["window_start_us"])
        window = make_alert(rule, symbol, start_us, kind, open_price, close_price)
        trigger = int(row["trigger_receive_time_us"] or 0) or None
        if trigger is None and tracker is not None:
            trigger = tracker.trigger_for(rule.window_us, window.window_end_us)
        alerts.append(
            Alert(
                rule=window.rule,
                symbol=window.symbol,
                kind=window.kind,
                side=window.side,
                window_start_us=window.window_start_us,
                window_end_us=window.window_end_us,
                open=window.open,
                close=window.close,
                pct_change=window.pct_change,
                raised_time_us=now_us,
                trigger_receive_time_us=trigger,
            )
        )
    return alerts


def count_published(alerts: Sequence[Alert], acked_us: Sequence[int], counter: Any, latency: Any) -> None:
    """Each acknowledged alert into ``counter`` (by rule and kind), and its trade-to-ack time into
    ``latency`` (by kind): the Spark query's and the express lane's metrics, counted one way."""
    for alert, ack_us in zip(alerts, acked_us, strict=False):
        counter.labels(rule=alert.rule, kind=alert.kind).inc()
        if alert.trigger_receive_time_us is not None:
            latency.labels(kind=alert.kind).observe(max(0.0, (ack_us - alert.trigger_receive_time_us) / 1e6))


@dataclass(slots=True)
class Delivery:
    """What became of the alerts of one :meth:`AlertPublisher.send`: each one's ack time (µs since
    epoch; 0 when it failed) and the errors of those that failed."""

    alerts: list[Alert]
    acked_us: list[int]
    failures: list[str]


class AlertPublisher:
    """An idempotent producer for the ``alerts`` topic; :meth:`publish` returns once acknowledged."""

    def __init__(self, kafka: KafkaSettings, topic: str, *, flush_timeout_s: float = 30.0) -> None:
        self.topic = topic
        self.flush_timeout_s = flush_timeout_s
        self._producer = Producer(
            {
                **kafka.client_config(),
                "client.id": "cryptopipe-alerting",
                "partitioner": PARTITIONER,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 0,
                "socket.nagle.disable": True,
                "logger": rate_limited_logger("cryptopipe.alerting.librdkafka"),
            }
        )

    def publish(self, alerts: Sequence[Alert]) -> list[int]:
        """Produce and wait for every acknowledgement; returns each alert's ack time (µs since epoch).

        Raises :class:`AlertPublishError` if any alert was not acknowledged in time.
        """
        if not alerts:
            return []
        outcome: list[Delivery] = []
        self.send(alerts, outcome.append)
        remaining = self._producer.flush(self.flush_timeout_s)
        failures = outcome[0].failures if outcome else []
        if remaining or failures:
            detail = (
                failures[0] if failures else f"{remaining} still in flight after {self.flush_timeout_s:g}s"
            )
            raise AlertPublishError(self.topic, remaining + len(failures), detail)
        return outcome[0].acked_us

    def send(self, alerts: Sequence[Alert], on_done: Callable[[Delivery], None]) -> None:
        """Produce without waiting: ``on_done`` gets the :class:`Delivery` from :meth:`poll` (or a
        flush) once every alert was acknowledged or failed. Ack times come from the client's own
        produce-to-ack latency, so they do not depend on when the callback is served."""
        delivery = Delivery(list(alerts), [0] * len(alerts), [])
        pending = [len(alerts)]

        def delivered(index: int, sent_us: int) -> Callable[[KafkaError | None, Message], None]:
            def on_delivery(error: KafkaError | None, message: Message) -> None:
                if error is not None:
                    delivery.failures.append(error.str())
                else:
                    latency = message.latency()
                    acked = sent_us + int(latency * 1e6) if latency is not None else time.time_ns() // 1000
                    delivery.acked_us[index] = acked
                pending[0] -= 1
                if not pending[0]:
                    on_done(delivery)

            return on_delivery

        for index, alert in enumerate(alerts):
            self._producer.produce(
                self.topic,
                value=encode(alert),
                key=encode_key(alert.symbol),
                on_delivery=delivered(index, time.time_ns() // 1000),
            )
        self._producer.poll(0)

    def poll(self, timeout_s: float = 0.0) -> None:
        """Serve the callbacks of the acknowledgements that came (for :meth:`send`)."""
        self._producer.poll(timeout_s)

    def close(self) -> None:
        self._producer.flush(self.flush_timeout_s)
