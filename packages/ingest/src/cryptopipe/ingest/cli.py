"""``cryptopipe ingest``: stream exchange trades into Kafka until SIGINT/SIGTERM.

A service on the runtime kit: :func:`run` takes :class:`IngestSettings` and a
:class:`~cryptopipe.runtime.Stop` and returns the final counts once the producer has flushed;
:func:`~cryptopipe.runtime.run_service` adds signals, ``/metrics`` and the atomic stats file
(``--stats-json`` or CRYPTOPIPE_STATS_JSON, with the final metrics).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from cryptopipe import runtime
from cryptopipe.ingest.publisher import IngestStats
from cryptopipe.ingest.service import Ingest
from cryptopipe.ingest.settings import IngestSettings, load_settings
from cryptopipe.runtime.kafka import KafkaLoginRefused
from cryptopipe.schemas import KafkaSettings
from cryptopipe.schemas import load_settings as load_shared_settings

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cryptopipe ingest",
        description="Binance trades into the Kafka prices topic. Flags override environment variables.",
    )
    parser.add_argument(
        "--symbols", help="comma-separated symbols, e.g. btcusdt,ethusdt, or all (INGEST_SYMBOLS)"
    )
    parser.add_argument("--mode", choices=["aggTrade", "trade"], help="stream kind (INGEST_MODE)")
    parser.add_argument(
        "--depth",
        choices=["off", "100ms", "1000ms"],
        help="order books from this depth stream (INGEST_DEPTH)",
    )
    parser.add_argument("--ws-url", help="exchange WebSocket base URL (BINANCE_WS_URL)")
    parser.add_argument("--rest-url", help="exchange REST base URL (BINANCE_REST_URL)")
    parser.add_argument(
        "--metrics-port", type=int, help="Prometheus port, 0 = any free (INGEST_METRICS_PORT)"
    )
    parser.add_argument("--metrics-host", help="Prometheus bind address (INGEST_METRICS_HOST)")
    runtime.add_run_arguments(parser)
    return parser


#: The settings the command line can set, by field name (each flag is the name with dashes).
_FLAGS = ("symbols", "mode", "depth", "ws_url", "rest_url", "metrics_port", "metrics_host")


def settings_from_args(args: argparse.Namespace) -> IngestSettings:
    """Environment and ``.env`` with the flags on top; raises :class:`ConfigError`."""
    return load_settings(**{name: getattr(args, name) for name in _FLAGS})


def run(settings: IngestSettings, stop: runtime.Stop, *, kafka: KafkaSettings | None = None) -> IngestStats:
    """Stream until ``stop`` is set, flush, and return the final counts."""
    ingest = Ingest(settings, kafka if kafka is not None else load_shared_settings(KafkaSettings))

    async def until_stopped() -> None:
        await ingest.run(stop.asyncio_event())

    asyncio.run(until_stopped())
    return ingest.stats


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    loaded = runtime.configured(
        "ingest",
        lambda: (settings_from_args(args), runtime.required_kafka(), runtime.run_settings_from(args)),
    )
    if loaded is None:
        return 2
    settings, kafka, run_settings = loaded
    try:
        runtime.run_service(
            "ingest",
            lambda s, stop: run(s, stop, kafka=kafka),
            settings,
            run_settings=run_settings,
        )
    except KafkaLoginRefused as exc:
        logger.error("ingest failed: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
