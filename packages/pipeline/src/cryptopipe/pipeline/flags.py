"""``up``'s flags, and the :class:`PipelineConfig` they build (flag > environment > ``.env`` > default).

``cryptopipe up`` and ``cryptopipe experiment run`` take these flags; each parses them once and
builds the config here. Nothing builds argv to parse it again: code builds a config directly.
A wrong value is one :class:`~cryptopipe.schemas.ConfigError` line naming the flag typed (or the
variable, when the value came from the environment).
"""

from __future__ import annotations

import argparse
import os
import re
from typing import Any

from pydantic import ValidationError

from cryptopipe.alerting.rules import default_rule, parse_rules, parse_threshold
from cryptopipe.pipeline.config import (
    DEFAULT_BINANCE_REST,
    DEFAULT_BINANCE_WS,
    AlertingConfig,
    ExchangeConfig,
    ObservabilityConfig,
    PipelineConfig,
    alerting_settings,
)
from cryptopipe.pipeline.names import parse_symbols
from cryptopipe.pipeline.priority import parse_cpus
from cryptopipe.replay.config import ReplaySettings
from cryptopipe.runtime import positive_int, positive_seconds
from cryptopipe.schemas import ConfigError, env_names, load_settings

#: The rules a replay run uses unless told otherwise: replayed and synthetic markets move less in a
#: minute than the seed's 0.5 %, and a first run should show alerts within its first minute.
REPLAY_DEMO_RULES = ("1m:0.1%:early", "10s:0.05%")

#: ``up``'s replay flags by the replay setting each one sets.
_REPLAY_FLAGS = {
    "speed": "--speed",
    "clock": "--clock",
    "replay_files": "--replay-file",
    "clock_offset_ms": "--clock-offset-ms",
    "delay_ms": "--delay-ms",
    "drop_after": "--drop-after",
    "rate": "--rate",
    "seed": "--seed",
    "loop": "--loop",
    "symbols": "--symbols",
}


def add_pipeline_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that say how the pipeline is composed (help texts carry no default: the parser's
    formatter adds each one, see :func:`defaults_formatter`)."""
    parser.add_argument(
        "--source",
        choices=["binance", "replay"],
        default="binance",
        help="live Binance, or the local replay exchange",
    )
    parser.add_argument(
        "--symbols",
        help="comma-separated symbols, or all (every TRADING symbol, dealt to the ingest shards); "
        "unset: btcusdt,ethusdt live, the replay's symbols on replay",
    )
    parser.add_argument("--mode", choices=["aggTrade", "trade"], default="aggTrade", help="the trade stream")
    parser.add_argument("--binance-ws-url", default=DEFAULT_BINANCE_WS, help="Binance's WebSocket base URL")
    parser.add_argument("--binance-rest-url", default=DEFAULT_BINANCE_REST, help="Binance's REST base URL")
    parser.add_argument(
        "--metrics-base-port",
        type=int,
        default=9100,
        metavar="PORT",
        help="services' /metrics ports follow docs/metrics.md from this base (ingest PORT+1, "
        "prices-consumer PORT+2, ...); further shards and consumers get free ports; 0 = free ports for all",
    )
    _add_scaling(parser)
    _add_observability(parser)
    _add_alerting(parser)
    parser.add_argument(
        "--depth",
        choices=["off", "100ms", "1000ms"],
        default="off",
        help="order books: each symbol's book kept in sync from Binance's diff-depth stream "
        "(@depth@100ms or @depth), published to Kafka and held in Redis by a books consumer",
    )
    _add_isolation(parser)
    parser.add_argument(
        "--history-cap", type=positive_int, metavar="N", help="trades kept per symbol in Redis history (1000)"
    )
    _add_replay(parser)


def _add_observability(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dashboard-port", type=int, default=8501, metavar="PORT", help="0 = any free port")
    parser.add_argument("--no-dashboard", action="store_true", help="do not start the dashboard")
    parser.add_argument(
        "--no-prometheus", action="store_true", help="do not start Prometheus even where it is installed"
    )
    parser.add_argument(
        "--prometheus-retention",
        default="1d",
        metavar="DURATION",
        help="Prometheus keeps samples this long (e.g. 6h, 7d)",
    )
    parser.add_argument(
        "--prometheus-retention-size",
        default="512MB",
        metavar="SIZE",
        help="and uses at most this much disk for them (e.g. 2GB)",
    )


def _add_isolation(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--background-nice",
        type=int,
        default=10,
        metavar="N",
        help="CPU niceness of the batch-like processes (the Spark job, the dashboard, Prometheus), "
        "so the prices path comes first; 0 = every process at the same priority",
    )
    parser.add_argument(
        "--background-sched",
        choices=("idle", "nice"),
        default="idle",
        help="idle: those processes' threads also run under SCHED_IDLE, so a waking prices-path "
        "thread preempts them at once; nice: renice only",
    )
    parser.add_argument(
        "--background-cpus",
        type=_cpus,
        default="off",
        metavar="LIST",
        help="keep those processes to these CPUs too (e.g. 1 or 2-3); off = any CPU",
    )


def _cpus(text: str) -> tuple[int, ...]:
    try:
        return parse_cpus(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_scaling(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ingest-shards",
        type=positive_int,
        default=1,
        metavar="N",
        help="N ingest processes (ingest, ingest-2, ...), each streaming a disjoint share of the "
        "symbols, dealt round-robin in the order given; N may not exceed the symbols",
    )
    parser.add_argument(
        "--consumers",
        type=positive_int,
        default=1,
        metavar="N",
        help="N prices-consumer processes in one consumer group, splitting the prices topic's "
        "partitions (4 unless the topic has more; members beyond them idle)",
    )
    parser.add_argument(
        "--drain-timeout",
        type=positive_seconds,
        default=30.0,
        metavar="SECONDS",
        help="at the end, how long to wait for consumers that make no progress before stopping them "
        "(a consumer that progresses is waited for longer)",
    )
    parser.add_argument(
        "--book-consumers",
        type=positive_int,
        default=1,
        metavar="N",
        help="with --depth: N books-consumer processes in one consumer group, splitting the book "
        "topics' partitions (each symbol's updates stay in one partition, so in order)",
    )


def _add_alerting(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-alerting", action="store_true", help="do not start the Spark alerting job")
    parser.add_argument(
        "--threshold",
        help="the default rule's threshold, e.g. 0.5%% or 0.005 (unset: ALERTING_RULES, else 1m:0.5%% live "
        "and the demo rules " + " and ".join(REPLAY_DEMO_RULES).replace("%", "%%") + " on replay)",
    )
    parser.add_argument(
        "--rule",
        action="append",
        default=[],
        metavar="RULE",
        help="alert rule WINDOW:THRESHOLD[:early][:name=NAME], e.g. 5m:1%%; repeatable",
    )
    parser.add_argument(
        "--spark-master", default="local[2]", help="the Spark master the alerting job runs on"
    )


def _add_replay(parser: argparse.ArgumentParser) -> None:
    replay = parser.add_argument_group("replay exchange (with --source replay)")
    replay.add_argument(
        "--replay-file",
        action="append",
        default=[],
        metavar="[SYMBOL:]PATH",
        help="a data.binance.vision trades/aggTrades CSV (plain or zip) or a file of recorded frames; "
        "repeatable; unset: synthetic trades",
    )
    replay.add_argument(
        "--speed", default="1", help="1 = the recorded pace, N = N times faster, max = no pauses"
    )
    replay.add_argument(
        "--clock",
        choices=["live", "original"],
        default="live",
        help="live: trades are stamped now; original: with the recorded times",
    )
    replay.add_argument(
        "--clock-offset-ms",
        type=int,
        default=0,
        metavar="MS",
        help="the exchange's clock runs this far ahead",
    )
    replay.add_argument(
        "--delay-ms", type=int, default=0, metavar="MS", help="network delay added to every frame and answer"
    )
    replay.add_argument(
        "--drop-after",
        type=int,
        metavar="N",
        help="drop each connection after N frames (the client misses a trade)",
    )
    replay.add_argument("--rate", type=float, help="synthetic trades per second, all symbols together (20)")
    replay.add_argument("--seed", type=int, help="the synthetic generator's seed (0)")
    replay.add_argument("--loop", action="store_true", help="restart the replay at the end of its data")


def defaults_formatter(prog: str) -> argparse.HelpFormatter:
    """Help that shows each flag's default (where it has one) after its text."""
    return argparse.ArgumentDefaultsHelpFormatter(prog, max_help_position=32)


def replay_settings(args: argparse.Namespace) -> ReplaySettings:
    """The replay exchange's settings from ``up``'s replay flags over its environment.

    Raises :class:`~cryptopipe.schemas.ConfigError` naming the flag typed (the variable when the
    value came from the environment).
    """
    given = {
        "speed": args.speed,
        "clock": args.clock,
        "replay_files": tuple(args.replay_file) or None,
        "clock_offset_ms": args.clock_offset_ms or None,
        "delay_ms": args.delay_ms or None,
        "drop_after": args.drop_after,
        "rate": args.rate,
        "seed": args.seed,
        "loop": args.loop or None,
        "symbols": args.symbols if args.symbols and not args.replay_file and args.symbols != "all" else None,
    }
    try:
        return load_settings(ReplaySettings, **given)
    except ConfigError as exc:
        raise _named_by_flags(exc, ReplaySettings, {k for k, v in given.items() if v is not None}) from None


def _named_by_flags(exc: ConfigError, cls: type[ReplaySettings], given: set[str]) -> ConfigError:
    """``exc`` with each variable a flag set replaced by that flag, as one line."""
    variables = env_names(cls)
    problems = list(exc.problems) or [str(exc)]
    lines = []
    for problem in problems:
        for field, flag in _REPLAY_FLAGS.items():
            if field in given:
                problem = re.sub(rf"^{re.escape(variables[field])}\b", flag, problem)
        lines.append(problem)
    return ConfigError("; ".join(lines), lines)


def _alerting(args: argparse.Namespace) -> AlertingConfig:
    """The job's config; rules and threshold are checked even when the job is off (a typo is a typo)."""
    rules = list(args.rule)
    try:
        if rules:
            parse_rules(";".join(rules))
        if args.threshold is not None:
            default_rule(parse_threshold(args.threshold))  # its range is checked with the rule
    except ValueError as exc:
        raise ConfigError(f"--rule/--threshold: {exc}") from None
    if args.no_alerting:
        return AlertingConfig(enabled=False)
    demo = (
        args.source == "replay"
        and not rules
        and args.threshold is None
        and "ALERTING_RULES" not in os.environ
    )
    settings = alerting_settings(
        REPLAY_DEMO_RULES if demo else rules, args.threshold, master=args.spark_master
    )
    return AlertingConfig(settings=settings, checkpoint_per_run="ALERTING_CHECKPOINT_DIR" not in os.environ)


def config_from_args(args: argparse.Namespace) -> PipelineConfig:
    """The run's config from parsed flags over the environment.

    Raises :class:`~cryptopipe.schemas.ConfigError` (one line) for a value that does not parse.
    """
    symbols = tuple(parse_symbols(args.symbols or ""))
    if args.symbols is not None and not symbols:
        raise ConfigError(f"--symbols: no symbol in {args.symbols!r} (e.g. --symbols btcusdt,ethusdt)")
    exchange = ExchangeConfig(
        source=args.source,
        binance_ws_url=args.binance_ws_url,
        binance_rest_url=args.binance_rest_url,
        **({"replay": replay_settings(args)} if args.source == "replay" else {}),
    )
    fields: dict[str, Any] = {
        "exchange": exchange,
        "symbols": symbols,
        "mode": args.mode,
        "ingest_shards": args.ingest_shards,
        "consumers": args.consumers,
        "book_consumers": args.book_consumers,
        "drain_timeout_s": args.drain_timeout,
        "history_cap": args.history_cap,
        "background_nice": args.background_nice,
        "background_sched": args.background_sched,
        "background_cpus": args.background_cpus,
        "depth": args.depth,
        "alerting": _alerting(args),
    }
    try:
        observability = ObservabilityConfig(
            metrics_base_port=args.metrics_base_port,
            prometheus=not args.no_prometheus,
            prometheus_retention=args.prometheus_retention,
            prometheus_retention_size=args.prometheus_retention_size,
            dashboard=not args.no_dashboard,
            dashboard_port=args.dashboard_port,
        )
        return PipelineConfig(**fields, observability=observability)
    except ValidationError as exc:
        error = exc.errors()[0]
        raise ConfigError(f"--{str(error['loc'][0]).replace('_', '-')}: {error['msg']}") from None
