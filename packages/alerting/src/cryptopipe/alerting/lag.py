"""The alerting query's Kafka lag: how many prices records it has not read yet.

Spark reads Kafka through its own checkpoint, not a consumer group, so neither the broker
(kafka-exporter) nor Spark's progress shows it: a batch's progress is planned up to the
partitions' end at that moment, so "behind latest" reads 0 there even while a slow batch lets
the topic run ahead. So a thread asks the broker for each partition's high watermark every
``interval_s`` and subtracts what the query read (:attr:`ProgressRecorder.offsets`, from its last
micro-batch)::

    cryptopipe_alerting_lag{topic, partition} = high watermark - cryptopipe_alerting_read_offset

A partition the query has not read yet (before its first micro-batch) gets no series. On Tansu,
whose ListOffsets answer can lag the log (``KafkaQuirks.list_offsets_unreliable``), the figure
can read low; it never reads below 0.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Mapping

from confluent_kafka import Consumer, KafkaException, TopicPartition

from cryptopipe.observability import metrics as m
from cryptopipe.runtime import rate_limited_logger
from cryptopipe.schemas import KafkaSettings

logger = logging.getLogger(__name__)
_warn = rate_limited_logger(__name__ + ".warnings")

ReadOffsets = Callable[[], Mapping[tuple[str, int], int]]


class LagProbe:
    """Sets ``cryptopipe_alerting_lag`` for ``topic`` every ``interval_s`` from a thread of its own."""

    def __init__(
        self, kafka: KafkaSettings, topic: str, read: ReadOffsets, *, interval_s: float = 1.0
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self.kafka = kafka
        self.topic = topic
        self.read = read
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._consumer: Consumer | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="alerting-lag", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def measure(self, timeout_s: float = 5.0) -> dict[int, int]:
        """One round: ``partition -> lag`` for every partition the query has read; sets the gauges."""
        read = {p: o for (t, p), o in self.read().items() if t == self.topic}
        if not read:
            return {}
        consumer = self._client()
        lags = {}
        for partition, position in sorted(read.items()):
            _low, high = consumer.get_watermark_offsets(
                TopicPartition(self.topic, partition), timeout=timeout_s, cached=False
            )
            lags[partition] = max(0, high - position)
            m.ALERTING_LAG.labels(topic=self.topic, partition=str(partition)).set(lags[partition])
        return lags

    def _client(self) -> Consumer:
        if self._consumer is None:
            self._consumer = Consumer(
                {
                    **self.kafka.client_config(),
                    "group.id": f"cryptopipe-alerting-lag-{uuid.uuid4().hex[:8]}",  # never joins
                    "client.id": "cryptopipe-alerting-lag",
                    "enable.auto.commit": False,
                    "logger": rate_limited_logger("cryptopipe.alerting.librdkafka"),
                }
            )
        return self._consumer

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.measure(timeout_s=min(5.0, max(1.0, 2 * self.interval_s)))
            except KafkaException as exc:
                m.ERRORS.labels(component="alerting", reason="lag_probe").inc()
                _warn.warning("alerting lag: cannot read %s's high watermarks: %s", self.topic, exc)
            except Exception:  # the probe only measures: it must never take the job down
                m.ERRORS.labels(component="alerting", reason="lag_probe").inc()
                _warn.exception("alerting lag: the probe failed")
