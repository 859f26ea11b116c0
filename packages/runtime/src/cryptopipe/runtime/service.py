"""How every service runs: ``run(settings, stop) -> stats`` on one kit.

A service package exposes ``run(settings, stop)``: it works until ``stop`` is set (or its input
ends), then returns its final figures. Its CLI parses flags into settings and calls
:func:`run_service`, which does the rest the same way for all of them: logging configured once,
SIGINT/SIGTERM set the stop, the ``/metrics`` endpoint, and the final stats written atomically
where :class:`RunSettings` says. ``up`` starts each child with its settings as environment
variables (:func:`cryptopipe.runtime.env.environ_of`) plus a :class:`RunSettings`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pydantic_settings import BaseSettings

from cryptopipe.observability import serve_metrics
from cryptopipe.observability.metrics import SYMBOL_LABELS
from cryptopipe.observability.metrics.symbols import DEFAULT_SYMBOL_LIMIT
from cryptopipe.runtime.logs import configure_logging
from cryptopipe.runtime.stats import write_stats
from cryptopipe.runtime.stop import Stop, stop_on_signals
from cryptopipe.schemas.config import SETTINGS_CONFIG, ConfigError, load_settings, setting
from cryptopipe.schemas.kafka_settings import KafkaSettings

logger = logging.getLogger(__name__)

S = TypeVar("S")


class RunSettings(BaseSettings):
    """How a service process runs, whatever the service: its log level and where its final stats go."""

    model_config = SETTINGS_CONFIG

    log_level: str = setting("CRYPTOPIPE_LOG_LEVEL", "INFO")
    """DEBUG, INFO, WARNING or ERROR."""
    stats_json: Path | None = setting("CRYPTOPIPE_STATS_JSON", None)
    """Write the service's final figures here as JSON at exit (atomically)."""
    metrics_symbol_limit: int = setting("METRICS_SYMBOL_LIMIT", DEFAULT_SYMBOL_LIMIT, ge=0)
    """Symbols with /metrics series of their own per process (0 = no limit): the first this many a
    process labels; every later one is labelled symbol="other" (sums over symbols stay exact). Each
    series costs render time while the service holds the GIL: at 1,500 symbols ingest's page was
    150,472 lines and took 1.4-2.0 s to render (9,263 lines, ~70 ms at 100)."""


def add_run_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--log-level`` and ``--stats-json``: the flags of :class:`RunSettings`, alike in every service."""
    parser.add_argument(
        "--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="(CRYPTOPIPE_LOG_LEVEL; INFO)"
    )
    parser.add_argument(
        "--stats-json",
        type=Path,
        metavar="PATH",
        help="write the final figures and metrics here at exit, atomically (CRYPTOPIPE_STATS_JSON)",
    )


def run_settings_from(args: argparse.Namespace) -> RunSettings:
    """:class:`RunSettings` from the environment with the flags of :func:`add_run_arguments` on top."""
    return load_settings(RunSettings, log_level=args.log_level, stats_json=args.stats_json)


def required_kafka() -> KafkaSettings:
    """:class:`KafkaSettings` from the environment, for a service that needs a broker given to it.

    Raises :class:`ConfigError` when KAFKA_BOOTSTRAP_SERVERS is empty: a service, unlike ``up``,
    never starts a local broker of its own.
    """
    kafka = load_settings(KafkaSettings)
    if not kafka.bootstrap_servers:
        raise ConfigError(
            "KAFKA_BOOTSTRAP_SERVERS is required (e.g. KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092); "
            "`cryptopipe up` starts a local broker for you"
        )
    return kafka


def configured(component: str, load: Callable[[], S], errors: tuple[type[Exception], ...] = ()) -> S | None:
    """``load()``, or ``None`` once a wrong configuration is said on stderr.

    It says ``cryptopipe <component>: <why>``, naming each wrong variable or flag; a CLI then exits 2.
    A :class:`ConfigError` is a wrong configuration, and so is each of ``errors`` (e.g. a rule
    that does not parse).
    """
    wrong: tuple[type[Exception], ...] = (ConfigError, *errors)
    try:
        return load()
    except wrong as exc:
        print(f"cryptopipe {component}: {exc}", file=sys.stderr)
        return None


def run_service(
    component: str,
    run: Callable[[S, Stop], Any],
    settings: S,
    *,
    run_settings: RunSettings | None = None,
    stop: Stop | None = None,
) -> Any:
    """Run ``run(settings, stop)`` as the process's service; returns its stats.

    The ``/metrics`` endpoint is the settings' own: ``metrics_port`` (0 any free port; a negative
    one, or settings without the field, serve none) on ``metrics_host`` (loopback by default).
    The per-symbol series are bounded by ``run_settings.metrics_symbol_limit`` from here on.
    The stats are written when ``run`` returns; a service that raises writes none (its caller
    reports the failure).
    """
    run_settings = run_settings or RunSettings()
    configure_logging(run_settings.log_level)
    SYMBOL_LABELS.configure(run_settings.metrics_symbol_limit)
    stop = stop or Stop()
    metrics_port = getattr(settings, "metrics_port", None)
    if isinstance(metrics_port, int) and metrics_port >= 0:
        serve_metrics(component, metrics_port, getattr(settings, "metrics_host", "127.0.0.1"))
    with stop_on_signals(stop):
        stats = run(settings, stop)
    if run_settings.stats_json is not None:
        write_stats(run_settings.stats_json, stats, metrics=True)
        logger.debug("%s wrote its stats to %s", component, run_settings.stats_json)
    return stats
