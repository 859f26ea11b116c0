"""``up``'s flags, and the :class:`PipelineConfig` they build (flag > environment > ``.env`` > default).

``cryptopipe up`` and ``cryptopipe experiment run`` take these flags; each parses them once and
builds the config here. Nothing builds argv to parse it again: code builds a config directly.
"""

from __future__ import annotations

import argparse
import os

from pydantic import ValidationError

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
from cryptopipe.replay.config import ReplaySettings
from cryptopipe.runtime import positive_int
from cryptopipe.schemas import ConfigError, load_settings


def add_pipeline_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that say how the pipeline is composed."""
    parser.add_argument(
        "--source",
        choices=["binance", "replay"],
        default="binance",
        help="live Binance (default) or the local replay exchange",
    )
    parser.add_argument(
        "--symbols", help="comma-separated symbols (default btcusdt,ethusdt, or the replay files')"
    )
    parser.add_argument("--mode", choices=["aggTrade", "trade"], default="aggTrade", help="stream kind")
    parser.add_argument("--binance-ws-url", default=DEFAULT_BINANCE_WS)
    parser.add_argument("--binance-rest-url", default=DEFAULT_BINANCE_REST)
    parser.add_argument(
        "--metrics-base-port",
        type=int,
        default=9100,
        help="services' /metrics ports follow docs/metrics.md from this base (default 9100: "
        "ingest 9101, prices-consumer 9102, ...); further ingest shards and consumers (ingest-2, "
        "prices-consumer-2, ...) get free ports; 0 = any free ports for all",
    )
    _add_scaling(parser)
    parser.add_argument("--dashboard-port", type=int, default=8501, help="0 = any free port")
    parser.add_argument("--no-dashboard", action="store_true", help="do not start the dashboard")
    parser.add_argument(
        "--no-prometheus", action="store_true", help="do not start Prometheus even if installed"
    )
    _add_alerting(parser)
    parser.add_argument(
        "--history-cap", type=int, help="trades kept per symbol in Redis history (default 1000)"
    )
    _add_replay(parser)


def _add_scaling(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ingest-shards",
        type=positive_int,
        default=1,
        metavar="N",
        help="N ingest processes (ingest, ingest-2, ...), each streaming a disjoint share of the "
        "symbols, dealt round-robin in the order given; N may not exceed the symbols (default 1)",
    )
    parser.add_argument(
        "--consumers",
        type=positive_int,
        default=1,
        metavar="N",
        help="N prices-consumer processes (prices-consumer, prices-consumer-2, ...) in one consumer "
        "group, splitting the prices topic's partitions (4 by default; more members than "
        "partitions idle) (default 1)",
    )


def _add_alerting(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-alerting", action="store_true", help="do not start the Spark alerting job")
    parser.add_argument("--threshold", help="the default rule's threshold, e.g. 0.5%% or 0.005")
    parser.add_argument(
        "--rule",
        action="append",
        default=[],
        metavar="RULE",
        help="alert rule WINDOW:THRESHOLD[:early]..., e.g. 5m:1%%; repeatable",
    )
    parser.add_argument("--spark-master", default="local[2]", help="Spark master (default local[2])")


def _add_replay(parser: argparse.ArgumentParser) -> None:
    replay = parser.add_argument_group("replay exchange (with --source replay)")
    replay.add_argument("--replay-file", action="append", default=[], metavar="[SYMBOL:]PATH")
    replay.add_argument("--speed", default="1", help="1 = recorded pace, N = N times faster, max")
    replay.add_argument("--clock", choices=["live", "original"], default="live")
    replay.add_argument("--clock-offset-ms", type=int, default=0)
    replay.add_argument("--delay-ms", type=int, default=0)
    replay.add_argument("--drop-after", type=int)
    replay.add_argument("--rate", type=float, help="synthetic trades per second (all symbols)")
    replay.add_argument("--seed", type=int)
    replay.add_argument("--loop", action="store_true", help="restart the replay at the end of its data")


def replay_settings(args: argparse.Namespace) -> ReplaySettings:
    """The replay exchange's settings from ``up``'s replay flags over its environment.

    Raises :class:`~cryptopipe.schemas.ConfigError` naming the variable of a wrong value.
    """
    return load_settings(
        ReplaySettings,
        speed=args.speed,
        clock=args.clock,
        replay_files=tuple(args.replay_file) or None,
        clock_offset_ms=args.clock_offset_ms or None,
        delay_ms=args.delay_ms or None,
        drop_after=args.drop_after,
        rate=args.rate,
        seed=args.seed,
        loop=args.loop or None,
        symbols=args.symbols if args.symbols and not args.replay_file else None,
    )


def config_from_args(args: argparse.Namespace) -> PipelineConfig:
    """The run's config from parsed flags over the environment.

    Raises :class:`~cryptopipe.schemas.ConfigError` (one line) for a value that does not parse.
    """
    exchange = ExchangeConfig(
        source=args.source,
        binance_ws_url=args.binance_ws_url,
        binance_rest_url=args.binance_rest_url,
        **({"replay": replay_settings(args)} if args.source == "replay" else {}),
    )
    alerting = AlertingConfig(enabled=False)
    if not args.no_alerting:
        alerting = AlertingConfig(
            settings=alerting_settings(args.rule, args.threshold, master=args.spark_master),
            checkpoint_per_run="ALERTING_CHECKPOINT_DIR" not in os.environ,
        )
    try:
        return _config(args, exchange, alerting)
    except ValidationError as exc:
        raise ConfigError(f"invalid flags: {exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}") from None


def _config(args: argparse.Namespace, exchange: ExchangeConfig, alerting: AlertingConfig) -> PipelineConfig:
    return PipelineConfig(
        exchange=exchange,
        symbols=tuple(parse_symbols(args.symbols or "")),
        mode=args.mode,
        ingest_shards=args.ingest_shards,
        consumers=args.consumers,
        history_cap=args.history_cap,
        alerting=alerting,
        observability=ObservabilityConfig(
            metrics_base_port=args.metrics_base_port,
            prometheus=not args.no_prometheus,
            dashboard=not args.no_dashboard,
            dashboard_port=args.dashboard_port,
        ),
    )
