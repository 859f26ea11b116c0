"""``cryptopipe alerting``: run the Spark alerting job until SIGINT/SIGTERM (or ``--run-for``).

A service on the runtime kit: :func:`run` (settings, stop) runs the job and returns its counts;
:func:`~cryptopipe.runtime.run_service` adds signals, ``/metrics`` and the atomic stats file
(``--stats-json`` or CRYPTOPIPE_STATS_JSON, with the final metrics).
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptopipe import runtime
from cryptopipe.alerting.errors import AlertingError
from cryptopipe.alerting.rules import RuleError, parse_rules, parse_threshold
from cryptopipe.alerting.settings import AlertingSettings
from cryptopipe.runtime.jvm import JvmError
from cryptopipe.schemas import KafkaSettings, load_settings

if TYPE_CHECKING:
    from cryptopipe.alerting.job import JobStats

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cryptopipe alerting",
        description="Price-change alerts: prices topic -> Spark Structured Streaming -> alerts topic. "
        "Flags override environment variables (ALERTING_*, KAFKA_*).",
    )
    rules = parser.add_argument_group("alert rules")
    rules.add_argument(
        "--rule",
        action="append",
        metavar="RULE",
        help="WINDOW:THRESHOLD[:early][:symbols=A,B][:override=SYM=T][:name=N], e.g. 1m:0.5%% or "
        "5m:1%%:early; repeat for several rules (ALERTING_RULES)",
    )
    rules.add_argument(
        "--threshold",
        metavar="T",
        help="shorthand for the default rule (1-minute windows) at threshold T, e.g. 0.5%% or 0.005",
    )
    rules.add_argument(
        "--watermark-delay-ms", type=int, help="allowed lateness (ALERTING_WATERMARK_DELAY_MS)"
    )
    spark = parser.add_argument_group("spark")
    spark.add_argument(
        "--master", help="local[*] (default), local[2], spark://host:7077 (ALERTING_SPARK_MASTER)"
    )
    spark.add_argument(
        "--source", choices=["auto", "native", "python"], help="Kafka reader (ALERTING_SOURCE)"
    )
    spark.add_argument("--checkpoint-dir", type=Path, help="checkpoint root (ALERTING_CHECKPOINT_DIR)")
    spark.add_argument("--starting-offsets", choices=["earliest", "latest"], help="ALERTING_STARTING_OFFSETS")
    spark.add_argument("--trigger-interval-ms", type=int, help="0 = back-to-back micro-batches")
    spark.add_argument("--shuffle-partitions", type=int, help="ALERTING_SHUFFLE_PARTITIONS")
    spark.add_argument("--max-records-per-trigger", type=int, help="ALERTING_MAX_RECORDS_PER_TRIGGER")
    spark.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE", help="extra Spark setting")
    spark.add_argument("--spark-log-level", choices=["ERROR", "WARN", "INFO", "DEBUG"])
    parser.add_argument(
        "--no-express",
        dest="express",
        action="store_false",
        default=None,
        help="Spark alone: no express lane beside the query (ALERTING_EXPRESS=false)",
    )
    service = parser.add_argument_group("service")
    service.add_argument(
        "--metrics-port", type=int, help="Prometheus port, 0 = any free (ALERTING_METRICS_PORT)"
    )
    service.add_argument("--metrics-host", help="Prometheus bind address (ALERTING_METRICS_HOST)")
    service.add_argument("--run-for", type=float, metavar="SECONDS", help="stop cleanly after this long")
    service.add_argument(
        "--ready-file",
        type=Path,
        help="written (JSON: query, source, express, checkpoint, rules) once the query runs "
        "(ALERTING_READY_FILE)",
    )
    runtime.add_run_arguments(service)
    return parser


def settings_from_args(args: argparse.Namespace) -> AlertingSettings:
    """Environment and ``.env`` with the flags on top; raises ConfigError or RuleError."""
    overrides: dict[str, Any] = {}
    if args.rule and args.threshold:
        raise RuleError("give either --rule or --threshold, not both")
    if args.rule:
        overrides["rules"] = parse_rules(";".join(args.rule))
    for name in (
        "watermark_delay_ms",
        "master",
        "source",
        "checkpoint_dir",
        "starting_offsets",
        "trigger_interval_ms",
        "shuffle_partitions",
        "max_records_per_trigger",
        "spark_log_level",
        "metrics_port",
        "metrics_host",
        "ready_file",
        "express",
    ):
        value = getattr(args, name)
        if value is not None:
            overrides[name] = value
    if args.conf:
        overrides["spark_conf"] = ",".join(args.conf)
    settings = load_settings(AlertingSettings, **overrides)
    if args.threshold:
        settings = settings.with_threshold(_threshold(args.threshold))
    return settings


def _threshold(text: str) -> Decimal:
    value = parse_threshold(text)
    if not 0 < value < 1:
        raise RuleError(f"--threshold {text} must be between 0 and 1 (or 0% and 100%)")
    return value


def run(
    settings: AlertingSettings,
    stop: runtime.Stop,
    *,
    kafka: KafkaSettings | None = None,
) -> JobStats:
    """The job until ``stop``: a failed query restarts from its checkpoint. The ready file
    (ALERTING_READY_FILE) is written each time the query starts."""
    from cryptopipe.alerting.job import AlertingJob

    job = AlertingJob(settings, kafka if kafka is not None else load_settings(KafkaSettings))
    ready_file = settings.ready_file

    def started() -> None:
        if ready_file is not None:
            ready = {
                "query": job.query_name,
                "source": job.source_kind,
                "express": job.express is not None,
                "checkpoint": str(job.checkpoint_location),
                "rules": [rule.describe() for rule in settings.rules],
                "spark_master": settings.master,
            }
            runtime.write_json_atomic(ready_file, ready)

    try:
        stats = job.run(stop, on_started=started)
    finally:
        job.close()
    logger.info("alerting stopped: %s", stats)
    return stats


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    loaded = runtime.configured(
        "alerting",
        lambda: (settings_from_args(args), runtime.required_kafka(), runtime.run_settings_from(args)),
        (RuleError,),
    )
    if loaded is None:
        return 2
    settings, kafka, run_settings = loaded
    logging.getLogger("py4j").setLevel(logging.WARNING)
    stop = runtime.Stop()
    if args.run_for is not None:
        timer = threading.Timer(args.run_for, stop.set, args=("--run-for",))
        timer.daemon = True
        timer.start()
    try:
        runtime.run_service(
            "alerting",
            lambda s, stopping: run(s, stopping, kafka=kafka),
            settings,
            run_settings=run_settings,
            stop=stop,
        )
    except (AlertingError, JvmError) as exc:
        print(f"cryptopipe alerting: {exc}", file=sys.stderr)
        return 1
    return 0
