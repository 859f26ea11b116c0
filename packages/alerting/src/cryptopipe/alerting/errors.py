"""Errors of the alerting package.

``JavaNotFoundError`` is runtime's: one Java finder (:func:`cryptopipe.runtime.jvm.find_java`)
serves Spark and the local Kafka broker.
"""

from __future__ import annotations

from cryptopipe.runtime.jvm import JavaNotFoundError

__all__ = ["AlertPublishError", "AlertingError", "JavaNotFoundError", "SourceUnavailableError"]


class AlertingError(Exception):
    """Base class of every error this package raises."""


class SourceUnavailableError(AlertingError):
    """The requested Kafka reader cannot run here (e.g. native without spark-sql-kafka)."""


class AlertPublishError(AlertingError):
    """The broker did not acknowledge a micro-batch's alerts; the batch will be replayed."""

    def __init__(self, topic: str, failed: int, detail: str) -> None:
        self.topic = topic
        self.failed = failed
        super().__init__(f"{failed} alert(s) not acknowledged by {topic}: {detail}")
