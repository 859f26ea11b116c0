"""The ``cryptopipe`` command.

Each subcommand belongs to the package that does the job; this module only dispatches to that
package's ``main(argv)`` and configures logging once, here at the entry point.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cryptopipe.runtime import configure_logging


@dataclass(frozen=True, slots=True)
class Command:
    target: str  # "module:function" taking argv and returning an exit code
    help: str


COMMANDS: dict[str, Command] = {
    "up": Command("cryptopipe.cli.up:main", "run the whole pipeline on this machine"),
    "replay-exchange": Command(
        "cryptopipe.replay.cli:main", "serve recorded or synthetic trades over Binance's protocol"
    ),
    "ingest": Command("cryptopipe.ingest.cli:main", "stream exchange trades into Kafka"),
    "prices-consumer": Command("cryptopipe.store.cli:prices_main", "write the prices topic to Redis"),
    "alerts-consumer": Command("cryptopipe.store.cli:alerts_main", "write the alerts topic to Redis"),
    "books-consumer": Command(
        "cryptopipe.store.cli:books_main", "write the book-updates topic to Redis (the top of each book)"
    ),
    "book": Command("cryptopipe.store.book_cli:main", "print the order book the pipeline holds in Redis"),
    "alerting": Command("cryptopipe.alerting.cli:main", "run the Spark alerting job"),
    "dashboard": Command("cryptopipe.dashboard.cli:main", "serve the live dashboard (Streamlit)"),
    "skew-monitor": Command("cryptopipe.skew.cli:main", "estimate the clock offset against Binance / NTP"),
    "kafka-cluster": Command(
        "cryptopipe.infra.cli:main", "run an N-broker Apache Kafka cluster on 127.0.0.1 (KRaft, no Docker)"
    ),
    "bench": Command(
        "cryptopipe.measure.bench:main", "benchmarks: prices, alerting, ingest-producer, soak, codec, faults"
    ),
    "experiment": Command(
        "cryptopipe.measure.experiment.cli:main", "environment-comparison experiments: run, compare, export"
    ),
    "docs": Command("cryptopipe.cli.docs:main", "regenerate docs/metrics.md and docs/configuration.md"),
}


def _load(target: str) -> Callable[[Sequence[str]], int]:
    module_name, _, function = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        hint = (
            " (pip install 'cryptopipe-cli[measure]')" if module_name.startswith("cryptopipe.measure") else ""
        )
        raise SystemExit(
            f"cryptopipe: this command needs {module_name}, which is not installed{hint} ({exc})"
        ) from exc
    return getattr(module, function)  # type: ignore[no-any-return]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cryptopipe",
        description="Real-time crypto pipeline: Binance -> Kafka -> Spark alerts -> Redis -> dashboard.",
    )
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="default: INFO"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, command in COMMANDS.items():
        sub.add_parser(name, help=command.help, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args, rest = build_parser().parse_known_args(argv)
    configure_logging(args.log_level)
    handler = _load(COMMANDS[args.command].target)
    try:
        return handler(rest)
    except KeyboardInterrupt:
        return 130


def run() -> None:
    sys.exit(main())
