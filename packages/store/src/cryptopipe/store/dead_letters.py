"""Records the consumer loop cannot decode: counted, logged with a sample and forwarded.

Each goes to the dead-letter topic as a :class:`~cryptopipe.schemas.DeadLetter`, with the
record's topic, partition and offset in its headers; the loop then skips it. The producer is
created at the first dead letter; an undelivered letter is counted in ``ERRORS``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from confluent_kafka import KafkaError, Message, Producer

from cryptopipe.observability import metrics as m
from cryptopipe.runtime import RateLimitedLog, rate_limited_logger
from cryptopipe.schemas import DeadLetter, DecodeError, KafkaSettings, encode

logger = logging.getLogger(__name__)

_FLUSH_TIMEOUT_S = 10.0


class DeadLetters:
    """Sends ``component``'s undecodable records to ``topic``; ``on_error`` gets the producer's errors."""

    def __init__(
        self,
        kafka: KafkaSettings,
        *,
        topic: str,
        component: str,
        log: RateLimitedLog,
        on_error: Callable[[KafkaError], None],
    ) -> None:
        self.topic = topic
        self.failures = 0
        """Dead letters the broker did not take."""
        self._kafka = kafka
        self._component = component
        self._log = log
        self._on_error = on_error
        self._producer: Producer | None = None

    def send(self, msg: Message, exc: DecodeError) -> None:
        """Count and log the bad record ``msg``, and forward it (waits only while the queue is full)."""
        m.DEAD_LETTERS.labels(component=self._component, reason=exc.reason).inc()
        m.ERRORS.labels(component=self._component, reason=exc.reason).inc()
        where = f"{msg.topic()}[{msg.partition()}]@{msg.offset()}"
        self._log.log(
            logger,
            logging.WARNING,
            "decode:" + exc.reason,
            "%s bad record at %s sent to %s: %s; sample %r",
            self._component,
            where,
            self.topic,
            exc,
            exc.sample,
        )
        value = msg.value() or b""
        letter = DeadLetter(
            source=self._component,
            reason=exc.reason,
            detail=f"{exc.detail} (at {where})",
            payload=value.decode("utf-8", "backslashreplace"),
            receive_time_us=time.time_ns() // 1000,
        )
        headers: list[tuple[str, str | bytes | None]] = [
            ("topic", str(msg.topic())),
            ("partition", str(msg.partition())),
            ("offset", str(msg.offset())),
        ]
        producer = self._get_producer()
        while True:
            try:
                producer.produce(
                    self.topic, encode(letter), msg.key(), headers=headers, on_delivery=self._on_delivery
                )
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)

    def flush(self) -> None:
        """Wait until the letters sent so far are delivered (at most 10 s); count those that are not."""
        if self._producer is not None:
            left = self._producer.flush(_FLUSH_TIMEOUT_S)
            if left:
                m.ERRORS.labels(component=self._component, reason="dead_letter_undelivered").inc(left)
                logger.error("%s %d dead letters still undelivered after 10 s", self._component, left)

    def close(self) -> None:
        """Flush, then let the producer go."""
        if self._producer is not None:
            self.flush()
            self._producer = None

    def _get_producer(self) -> Producer:
        if self._producer is None:
            self._producer = Producer(
                {
                    **self._kafka.client_config(),
                    "client.id": f"{self._component}-dead-letters",
                    "linger.ms": 5,
                    "enable.idempotence": False,
                    "error_cb": self._on_error,
                    "logger": rate_limited_logger("cryptopipe.store.librdkafka"),
                }
            )
        return self._producer

    def _on_delivery(self, error: KafkaError | None, _msg: Message) -> None:
        if error is not None:
            self.failures += 1
            m.ERRORS.labels(component=self._component, reason="dead_letter_undelivered").inc()
            self._log.log(
                logger,
                logging.ERROR,
                "dead_letter_undelivered",
                "%s dead letter not delivered to %s: %s",
                self._component,
                self.topic,
                error,
            )
