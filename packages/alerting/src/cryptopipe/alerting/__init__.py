"""Price-change alerts with Spark Structured Streaming: prices topic -> windows -> alerts topic.

Start with :class:`AlertingJob` (the job), :mod:`cryptopipe.alerting.rules` (what an alert means)
and :mod:`cryptopipe.alerting.reference` (the same semantics in plain Python, the yardstick).
PySpark is imported lazily: importing this package does not start a JVM.
"""

from cryptopipe.alerting.errors import (
    AlertingError,
    AlertPublishError,
    JavaNotFoundError,
    SourceUnavailableError,
)
from cryptopipe.alerting.rules import Rule, RuleError, default_rule, parse_rule, parse_rules
from cryptopipe.alerting.settings import AlertingSettings

__all__ = [
    "AlertPublishError",
    "AlertingError",
    "AlertingJob",
    "AlertingSettings",
    "JavaNotFoundError",
    "Rule",
    "RuleError",
    "SourceUnavailableError",
    "default_rule",
    "parse_rule",
    "parse_rules",
]


def __getattr__(name: str) -> object:
    if name == "AlertingJob":
        from cryptopipe.alerting.job import AlertingJob

        return AlertingJob
    raise AttributeError(name)
