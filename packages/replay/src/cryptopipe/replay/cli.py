"""``cryptopipe replay-exchange``: run the Binance stand-in until SIGINT/SIGTERM.

Examples::

    cryptopipe replay-exchange --replay-file ../shared/data/binance/btcusdt_20240808.gz --speed 10
    cryptopipe replay-exchange --replay-file BTCUSDT-aggTrades-2024-03-01.zip --clock original
    cryptopipe replay-exchange --symbols BTCUSDT,ETHUSDT --rate 200 --seed 7 --ready-file /tmp/replay.json
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptopipe.replay.config import ReplayConfig, ReplaySettings, parse_speed
from cryptopipe.replay.errors import ReplayError
from cryptopipe.replay.exchange import ReplayExchange
from cryptopipe.runtime import Stop, add_run_arguments, run_service, run_settings_from, write_json_atomic
from cryptopipe.schemas import ConfigError, load_settings

log = logging.getLogger(__name__)


def _speed(text: str) -> float:
    try:
        return parse_speed(text)
    except ReplayError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _symbols(text: str) -> list[str]:
    return [s.strip().upper() for s in text.split(",") if s.strip()]


def build_parser() -> argparse.ArgumentParser:
    """The flags of :class:`ReplaySettings`; a flag not given is None, so the variable or default holds."""
    p = argparse.ArgumentParser(
        prog="cryptopipe replay-exchange",
        description="A local exchange speaking Binance Spot's WebSocket and REST protocol, fed by "
        "data.binance.vision files, recorded frames or a seeded synthetic generator. Every flag has "
        "a REPLAY_* environment variable (docs/configuration.md).",
    )
    _source_arguments(p.add_argument_group("source (default: synthetic)"))
    _pacing_arguments(p.add_argument_group("pacing and clock"))
    _network_arguments(p.add_argument_group("network and faults"))
    _book_arguments(p.add_argument_group("order book, whole market and their faults"))
    p.add_argument(
        "--ready-file", type=Path, help="write {port, ws_url, rest_url, pid} JSON here (REPLAY_READY_FILE)"
    )
    add_run_arguments(p)
    return p


def _source_arguments(src: argparse._ArgumentGroup) -> None:
    src.add_argument(
        "--replay-file",
        dest="replay_files",
        action="append",
        metavar="[SYMBOL:]PATH",
        help="data.binance.vision trades/aggTrades .csv/.zip, or recorded '<ns> <frame>' lines (gzip or "
        "plain); repeatable. The symbol comes from the file name, the frames, or SYMBOL:PATH.",
    )
    src.add_argument(
        "--fetch",
        action="append",
        metavar="SYMBOL:DATE[:trades|aggTrades]",
        help="download that day from data.binance.vision into --cache-dir (needs internet); repeatable",
    )
    src.add_argument("--cache-dir", type=Path, help="where --fetch stores files")
    src.add_argument("--fetch-base-url", help=argparse.SUPPRESS)
    src.add_argument("--symbols", type=_symbols, help="synthetic: A,B,... (BTCUSDT,ETHUSDT)")
    src.add_argument("--rate", type=float, help="synthetic: mean messages/s over all symbols (20)")
    src.add_argument("--seed", type=int, help="synthetic: random seed (0)")
    src.add_argument(
        "--burst",
        action=argparse.BooleanOptionalAction,
        help="synthetic: occasional bursts (--no-burst: steady Poisson, for benchmarks)",
    )
    src.add_argument("--count", type=int, help="synthetic: stop after N trades (default: endless)")
    src.add_argument(
        "--skip-bad-lines",
        action="store_const",
        const=True,
        help="skip and count malformed lines instead of failing with file:line",
    )
    src.add_argument(
        "--passthrough",
        action=argparse.BooleanOptionalAction,
        help="send recorded depth/bookTicker frames verbatim to their subscribers (on)",
    )


def _pacing_arguments(play: argparse._ArgumentGroup) -> None:
    play.add_argument("--speed", type=_speed, help="1 = recorded pace, N = Nx faster, max")
    play.add_argument(
        "--clock",
        choices=["live", "original"],
        help="live (default): re-stamp event/trade times to now keeping the spacing; original: keep "
        "recorded times",
    )
    play.add_argument("--clock-offset-ms", type=int, help="server clock runs N ms ahead")
    play.add_argument("--clock-drift-ppm", type=float, help="server clock gains N ppm (0)")
    play.add_argument("--clock-step-ms", type=float, help="server clock steps by N ms, once (0)")
    play.add_argument(
        "--clock-step-after",
        dest="clock_step_after_s",
        type=float,
        help="the step comes N seconds after start",
    )
    play.add_argument(
        "--loop", action="store_const", const=True, help="restart the source at its end (ids keep growing)"
    )
    play.add_argument(
        "--start-on-subscribe",
        action=argparse.BooleanOptionalAction,
        help="start the tape when the first client subscribes (on)",
    )
    play.add_argument(
        "--exit-on-finish", action="store_const", const=True, help="exit once the tape has played to its end"
    )


def _network_arguments(net: argparse._ArgumentGroup) -> None:
    net.add_argument("--host", help="bind address (127.0.0.1)")
    net.add_argument("--port", type=int, help="0 = a free port (default)")
    net.add_argument("--delay-ms", type=int, help="delay each WS frame, and each REST direction")
    net.add_argument(
        "--jitter-ms", type=float, help="jitter of every delay: normal sd, or pareto mean excess"
    )
    net.add_argument("--jitter-distribution", choices=["normal", "pareto"], help="normal (default) or pareto")
    for leg in ("rest-request", "rest-response", "ws"):
        net.add_argument(
            f"--{leg}-delay-ms", type=float, help=f"the {leg.replace('-', ' ')} delay (--delay-ms)"
        )
    net.add_argument(
        "--drop-after",
        type=int,
        help="drop each connection after N frames (it misses at least the next trade)",
    )
    net.add_argument(
        "--ping-interval", dest="ping_interval_s", type=float, help="seconds between server pings (20)"
    )
    net.add_argument(
        "--pong-timeout", dest="pong_timeout_s", type=float, help="close when no pong for this long (60)"
    )
    net.add_argument(
        "--shutdown-after",
        dest="shutdown_after_s",
        type=float,
        help="send serverShutdown and close each connection after N seconds",
    )
    net.add_argument("--queue-size", type=int, help="frames buffered per slow client (10000)")


#: The order-book, market and depth-fault flags: (flag, type, help).
_BOOK_FLAGS: tuple[tuple[str, type, str], ...] = (
    ("--book-changes-per-trade", float, "synthetic: book changes per trade (3)"),
    ("--market-size", int, "synthetic: a market of N TRADING symbols (+N/100 non-TRADING)"),
    ("--market-skew", float, "synthetic: Zipf exponent of activity by symbol rank (1)"),
    ("--rest-weight-limit", int, "REST weight per minute, then 429 (6000; 0 = off)"),
    ("--depth-drop-every", int, "fault: every Nth depth event is not sent"),
    ("--depth-drop-update-id", int, "fault: the depth event holding this update id is not sent"),
    ("--depth-snapshot-delay-ms", int, "fault: /api/v3/depth answers N ms late"),
    ("--depth-snapshot-fail", int, "fault: the first K depth requests per symbol get HTTP 503"),
    ("--depth-snapshot-stale", int, "fault: the next K depth requests per symbol get an outdated book"),
)


def _book_arguments(book: argparse._ArgumentGroup) -> None:
    book.add_argument(
        "--book",
        action=argparse.BooleanOptionalAction,
        help="synthetic: play an order book (depth, bookTicker, REST depth); trades hit its touch (off)",
    )
    for flag, kind, text in _BOOK_FLAGS:
        book.add_argument(flag, type=kind, help=text)


def settings_from_args(args: argparse.Namespace) -> ReplaySettings:
    """:class:`ReplaySettings` from the environment with the given flags on top."""
    flags = {name: getattr(args, name, None) for name in ReplaySettings.model_fields}
    return load_settings(ReplaySettings, **flags)


def config_from_args(args: argparse.Namespace) -> ReplayConfig:
    return settings_from_args(args).config()


def _ready_document(exchange: ReplayExchange) -> dict[str, Any]:
    """What ``--ready-file`` holds: where a client finds the exchange, and who serves it."""
    return {
        "port": exchange.port,
        "ws_url": exchange.ws_url,
        "rest_url": exchange.rest_url,
        "pid": os.getpid(),
    }


async def _serve(settings: ReplaySettings, stop: Stop) -> dict[str, Any]:
    config = settings.config()
    stopping = stop.asyncio_event()
    async with ReplayExchange(config) as exchange:
        if settings.ready_file is not None:
            write_json_atomic(settings.ready_file, _ready_document(exchange))
        print(f"replay-exchange listening on {exchange.ws_url} (REST {exchange.rest_url})", flush=True)
        stopper = asyncio.create_task(stopping.wait())
        finisher = asyncio.create_task(exchange.tape.finished_event.wait())
        pending = {stopper, finisher}
        while stopper in pending:
            _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if finisher not in pending and (settings.exit_on_finish or exchange.stats.error):
                break
        for task in pending:
            task.cancel()
        stats = exchange.stats
        log.info(
            "stopping: %d trades played, %d frames sent, %d connections",
            stats.trades_played,
            stats.frames_sent,
            stats.connections,
        )
        return dataclasses.asdict(stats)


def run(settings: ReplaySettings, stop: Stop) -> dict[str, Any]:
    """Serve until ``stop`` is set (or the tape ends with REPLAY_EXIT_ON_FINISH, or fails); the final
    figures. Raises :class:`ReplayError` for a bad source, OSError when the port cannot be bound."""
    try:
        return asyncio.run(_serve(settings, stop))
    finally:
        if settings.ready_file is not None:
            settings.ready_file.expanduser().unlink(missing_ok=True)  # where write_json_atomic wrote it


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = settings_from_args(args)
        stats = run_service("replay-exchange", run, settings, run_settings=run_settings_from(args))
    except (ConfigError, ReplayError) as exc:  # a bad setting, or a source that cannot be read
        print(f"replay-exchange: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"replay-exchange: {exc}", file=sys.stderr)
        return 1
    if stats["error"]:
        print(f"replay-exchange: {stats['error']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
