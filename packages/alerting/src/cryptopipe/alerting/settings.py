"""Settings of the alerting job.

Precedence: CLI flag > environment variable > ``.env`` file > default. Every field names its
environment variable; docs/configuration.md is generated from the descriptions here.
"""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Literal

from pydantic import field_validator
from pydantic_settings import BaseSettings, NoDecode

from cryptopipe.alerting.rules import (
    Rule,
    RuleError,
    book_rules,
    default_rule,
    parse_rules,
    price_rules,
    validate_rules,
)
from cryptopipe.schemas import SETTINGS_CONFIG, setting

SourceChoice = Literal["auto", "native", "python"]
StartingOffsets = Literal["earliest", "latest"]


class AlertingSettings(BaseSettings):
    """Everything ``cryptopipe alerting`` can be told. Kafka's own settings are in KafkaSettings."""

    model_config = SETTINGS_CONFIG

    rules: Annotated[tuple[Rule, ...], NoDecode] = setting("ALERTING_RULES", (default_rule(),))
    """Alert rules, ';'-separated, e.g. `1m:0.5%;5m:1%:early`, and book rules such as `spread>5bps:10s`
    (see cryptopipe.alerting.rules and the alerting README)."""
    watermark_delay_ms: int = setting("ALERTING_WATERMARK_DELAY_MS", 1000, ge=0, le=3_600_000)
    """How late (trade time) a trade may arrive and still count; later ones are dropped."""
    checkpoint_dir: Path = setting("ALERTING_CHECKPOINT_DIR", Path(".cryptopipe/alerting"))
    """Root of Spark checkpoints; each rule set/topic gets its own sub-directory."""
    master: str = setting("ALERTING_SPARK_MASTER", "local[*]")
    """Spark master: local[*], local[2], spark://host:7077 ..."""
    source: SourceChoice = setting("ALERTING_SOURCE", "auto")
    """Kafka reader: native (spark-sql-kafka on the classpath), python (confluent-kafka Python Data
    Source) or auto (native when available)."""
    starting_offsets: StartingOffsets = setting("ALERTING_STARTING_OFFSETS", "earliest")
    """Where a query without a checkpoint starts reading prices."""
    max_records_per_trigger: int = setting("ALERTING_MAX_RECORDS_PER_TRIGGER", 0, ge=0)
    """Cap on trades per micro-batch (0 = no cap); bounds catch-up batches."""
    trigger_interval_ms: int = setting("ALERTING_TRIGGER_INTERVAL_MS", 0, ge=0)
    """Micro-batch trigger interval; 0 = start the next batch as soon as one ends."""
    shuffle_partitions: int = setting("ALERTING_SHUFFLE_PARTITIONS", 2, ge=1, le=1000)
    """State/shuffle partitions (fixed by the first run of a checkpoint)."""
    spark_conf: Annotated[dict[str, str], NoDecode] = setting("ALERTING_SPARK_CONF", default_factory=dict)
    """Extra Spark settings, `key=value` pairs separated by ','."""
    spark_log_level: Literal["ERROR", "WARN", "INFO", "DEBUG"] = setting("ALERTING_SPARK_LOG_LEVEL", "WARN")
    """Spark's own log level."""
    metrics_port: int = setting("ALERTING_METRICS_PORT", 9104, ge=0, le=65535)
    """Prometheus port, 0 = any free."""
    metrics_host: str = setting("ALERTING_METRICS_HOST", "127.0.0.1")
    """Prometheus bind address."""
    producer_flush_timeout_s: float = setting("ALERTING_FLUSH_TIMEOUT_S", 30.0, gt=0)
    """How long a micro-batch waits for the broker to acknowledge its alerts."""
    restart_backoff_max_s: float = setting("ALERTING_RESTART_BACKOFF_MAX_S", 30.0, gt=0)
    """A failed query restarts from its checkpoint with backoff up to this long."""
    express: bool = setting("ALERTING_EXPRESS", True)
    """Run the express lane beside the Spark query: each alert the moment its trade arrives, from a
    plain Kafka consumer applying the same rule (Spark's copy follows and is deduplicated)."""
    progress_history: int = setting("ALERTING_PROGRESS_HISTORY", 100, ge=1, le=1_000_000)
    """Micro-batch progress events the job keeps in memory, the newest (plain Python copies, no
    py4j proxy): a bound by count, so a run of days holds no more than a few minutes'. The metrics
    and the run's totals do not need them (cryptopipe_alerting_progress_history)."""
    ready_file: Path | None = setting("ALERTING_READY_FILE", None)
    """Written (JSON: query, source, express, checkpoint, rules, master) each time the query starts."""

    @field_validator("rules", mode="before")
    @classmethod
    def _parse_rules(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                return parse_rules(value)
            except RuleError as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("rules")
    @classmethod
    def _validate_rules(cls, value: tuple[Rule, ...]) -> tuple[Rule, ...]:
        try:
            return validate_rules(value)
        except RuleError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("spark_conf", mode="before")
    @classmethod
    def _parse_conf(cls, value: object) -> object:
        if isinstance(value, str):
            pairs: dict[str, str] = {}
            for item in value.split(","):
                if not item.strip():
                    continue
                key, sep, val = item.partition("=")
                if not sep or not key.strip():
                    raise ValueError(f"ALERTING_SPARK_CONF item {item!r} is not key=value")
                pairs[key.strip()] = val.strip()
            return pairs
        return value

    def env_text(self) -> dict[str, str]:
        """The fields whose environment text is their own (``cryptopipe.runtime.environ_of``):
        the rules as ``;``-separated rule text, the Spark settings as ``key=value`` pairs."""
        return {
            "rules": ";".join(str(rule) for rule in self.rules),
            "spark_conf": ",".join(f"{key}={value}" for key, value in self.spark_conf.items()),
        }

    def with_threshold(self, threshold: Decimal) -> AlertingSettings:
        """The default rule (1-minute windows) at another threshold, replacing every rule."""
        return self.model_copy(update={"rules": (default_rule(threshold),)})

    def fingerprint(self, topic: str, source_kind: str, *, book: bool = False) -> str:
        """Identity of a query's state: its rules (the book rules for the ``book-updates`` query,
        else the price rules), watermark and input; names its checkpoint."""
        rules = book_rules(self.rules) if book else price_rules(self.rules)
        payload = {
            "topic": topic,
            "source": source_kind,
            "delay": self.watermark_delay_ms,
            # A price rule dumps the fields it had before book rules came, so its checkpoint stays.
            "rules": [rule.model_dump(mode="json", exclude=None if book else _BOOK_FIELDS) for rule in rules],
        }
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
        return digest[:12]

    def checkpoint_location(self, topic: str, source_kind: str, *, book: bool = False) -> Path:
        """``<checkpoint_dir>/<topic>-<fingerprint>``: a changed rule set starts a fresh query.

        (Spark refuses to restart a checkpoint whose state layout or source changed.)
        """
        return self.checkpoint_dir / f"{topic}-{self.fingerprint(topic, source_kind, book=book)}"


_BOOK_FIELDS = {"metric", "op", "band_bps", "hold_us"}
