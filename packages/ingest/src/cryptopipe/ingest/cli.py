"""``cryptopipe ingest``: stream exchange trades into Kafka until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from cryptopipe.ingest.errors import ConfigError
from cryptopipe.ingest.service import Ingest
from cryptopipe.ingest.settings import IngestSettings, load_settings
from cryptopipe.observability import serve_metrics
from cryptopipe.schemas import KafkaSettings
from cryptopipe.schemas import load_settings as load_shared_settings

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cryptopipe ingest",
        description="Binance trades into the Kafka prices topic. Flags override environment variables.",
    )
    parser.add_argument("--symbols", help="comma-separated symbols, e.g. btcusdt,ethusdt (INGEST_SYMBOLS)")
    parser.add_argument("--mode", choices=["aggTrade", "trade"], help="stream kind (INGEST_MODE)")
    parser.add_argument("--ws-url", help="exchange WebSocket base URL (BINANCE_WS_URL)")
    parser.add_argument("--rest-url", help="exchange REST base URL (BINANCE_REST_URL)")
    parser.add_argument(
        "--metrics-port", type=int, help="Prometheus port, 0 = any free (INGEST_METRICS_PORT)"
    )
    parser.add_argument("--metrics-host", help="Prometheus bind address (INGEST_METRICS_HOST)")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument(
        "--stats-json", type=Path, metavar="PATH", help="write the final counts here at exit (after flushing)"
    )
    return parser


def settings_from_args(args: argparse.Namespace) -> IngestSettings:
    """Environment and ``.env`` with the flags on top; raises :class:`ConfigError`."""
    return load_settings(
        symbols=args.symbols,
        mode=args.mode,
        ws_url=args.ws_url,
        rest_url=args.rest_url,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
    )


async def _run(ingest: Ingest) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await ingest.run(stop)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = settings_from_args(args)
        kafka = load_shared_settings(KafkaSettings)
    except ConfigError as exc:
        print(f"cryptopipe ingest: {exc}", file=sys.stderr)
        return 2
    if not kafka.bootstrap_servers:
        print(
            "cryptopipe ingest: KAFKA_BOOTSTRAP_SERVERS is required "
            "(e.g. KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092); `cryptopipe up` starts a local broker for you",
            file=sys.stderr,
        )
        return 2
    if not logging.getLogger().handlers:
        logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    serve_metrics("ingest", settings.metrics_port, settings.metrics_host)
    ingest = Ingest(settings, kafka)
    try:
        asyncio.run(_run(ingest))
    finally:
        if args.stats_json is not None:
            args.stats_json.write_text(json.dumps(dataclasses.asdict(ingest.stats)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
