"""``cryptopipe replay-exchange``: run the Binance stand-in until SIGINT/SIGTERM.

Examples::

    cryptopipe replay-exchange --replay-file ../shared/data/binance/btcusdt_20240808.gz --speed 10
    cryptopipe replay-exchange --replay-file BTCUSDT-aggTrades-2024-03-01.zip --clock original
    cryptopipe replay-exchange --symbols BTCUSDT,ETHUSDT --rate 200 --seed 7 --ready-file /tmp/replay.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from cryptopipe.replay.config import BINANCE_VISION_URL, ReplayConfig, parse_speed
from cryptopipe.replay.errors import ReplayError
from cryptopipe.replay.server import ReplayExchange

log = logging.getLogger(__name__)


def _speed(text: str) -> float:
    try:
        return parse_speed(text)
    except ReplayError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _symbols(text: str) -> list[str]:
    return [s.strip().upper() for s in text.split(",") if s.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cryptopipe replay-exchange",
        description="A local exchange speaking Binance Spot's WebSocket and REST protocol, fed by "
        "data.binance.vision files, recorded frames or a seeded synthetic generator.",
    )
    _source_arguments(p.add_argument_group("source (default: synthetic)"))
    _pacing_arguments(p.add_argument_group("pacing and clock"))
    _network_arguments(p.add_argument_group("network and faults"))
    p.add_argument("--ready-file", type=Path, default=None, help="write {port, ws_url, rest_url} JSON here")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


def _source_arguments(src: argparse._ArgumentGroup) -> None:
    src.add_argument(
        "--replay-file",
        action="append",
        default=[],
        metavar="[SYMBOL:]PATH",
        help="data.binance.vision trades/aggTrades .csv/.zip, or recorded '<ns> <frame>' lines (gzip or "
        "plain); repeatable. The symbol comes from the file name, the frames, or SYMBOL:PATH.",
    )
    src.add_argument(
        "--fetch",
        action="append",
        default=[],
        metavar="SYMBOL:DATE[:trades|aggTrades]",
        help="download that day from data.binance.vision into --cache-dir (needs internet); repeatable",
    )
    src.add_argument("--cache-dir", type=Path, default=None, help="where --fetch stores files")
    src.add_argument("--fetch-base-url", default=BINANCE_VISION_URL, help=argparse.SUPPRESS)
    src.add_argument("--symbols", type=_symbols, default=["BTCUSDT", "ETHUSDT"], help="synthetic: A,B,...")
    src.add_argument("--rate", type=float, default=20.0, help="synthetic: mean messages/s over all symbols")
    src.add_argument("--seed", type=int, default=0, help="synthetic: random seed")
    src.add_argument(
        "--burst",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="synthetic: occasional bursts (--no-burst: steady Poisson, for benchmarks)",
    )
    src.add_argument(
        "--count", type=int, default=None, help="synthetic: stop after N trades (default: endless)"
    )
    src.add_argument(
        "--skip-bad-lines",
        action="store_true",
        help="skip and count malformed lines instead of failing with file:line",
    )
    src.add_argument(
        "--passthrough",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="send recorded depth/bookTicker frames verbatim to their subscribers",
    )


def _pacing_arguments(play: argparse._ArgumentGroup) -> None:
    play.add_argument("--speed", type=_speed, default=1.0, help="1 = recorded pace, N = Nx faster, max")
    play.add_argument(
        "--clock",
        choices=["live", "original"],
        default="live",
        help="live: re-stamp event/trade times to now keeping the spacing; original: keep recorded times",
    )
    play.add_argument("--clock-offset-ms", type=int, default=0, help="server clock runs N ms ahead")
    play.add_argument("--loop", action="store_true", help="restart the source at its end (ids keep growing)")
    play.add_argument(
        "--start-on-subscribe",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="start the tape when the first client subscribes",
    )
    play.add_argument(
        "--exit-on-finish", action="store_true", help="exit once the tape has played to its end"
    )


def _network_arguments(net: argparse._ArgumentGroup) -> None:
    net.add_argument("--host", default="127.0.0.1")
    net.add_argument("--port", type=int, default=0, help="0 = a free port")
    net.add_argument("--delay-ms", type=int, default=0, help="delay each WS frame, and each REST direction")
    net.add_argument("--drop-after", type=int, default=None, help="drop each connection after N frames")
    net.add_argument("--ping-interval", type=float, default=20.0, help="seconds between server pings")
    net.add_argument("--pong-timeout", type=float, default=60.0, help="close when no pong for this long")
    net.add_argument(
        "--shutdown-after",
        type=float,
        default=None,
        help="send serverShutdown and close each connection after N seconds",
    )
    net.add_argument("--queue-size", type=int, default=10_000, help="frames buffered per slow client")


def config_from_args(args: argparse.Namespace) -> ReplayConfig:
    return ReplayConfig(
        replay_files=tuple(args.replay_file),
        fetch=tuple(args.fetch),
        cache_dir=args.cache_dir,
        fetch_base_url=args.fetch_base_url,
        symbols=tuple(args.symbols),
        rate=args.rate,
        seed=args.seed,
        burst=args.burst,
        count=args.count,
        skip_bad_lines=args.skip_bad_lines,
        passthrough=args.passthrough,
        speed=args.speed,
        clock=args.clock,
        clock_offset_ms=args.clock_offset_ms,
        loop=args.loop,
        start_on_subscribe=args.start_on_subscribe,
        host=args.host,
        port=args.port,
        delay_ms=args.delay_ms,
        drop_after=args.drop_after,
        ping_interval_s=args.ping_interval,
        pong_timeout_s=args.pong_timeout,
        shutdown_after_s=args.shutdown_after,
        queue_size=args.queue_size,
    )


def _write_ready_file(path: Path, exchange: ReplayExchange) -> None:
    payload = {
        "port": exchange.port,
        "ws_url": exchange.ws_url,
        "rest_url": exchange.rest_url,
        "pid": os.getpid(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(json.dumps(payload))
    partial.replace(path)


async def _serve(config: ReplayConfig, ready_file: Path | None, exit_on_finish: bool) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    handled: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
            handled.append(sig)
        except (NotImplementedError, RuntimeError):  # not the main thread, or Windows
            pass
    try:
        async with ReplayExchange(config) as exchange:
            if ready_file is not None:
                _write_ready_file(ready_file, exchange)
            print(f"replay-exchange listening on {exchange.ws_url} (REST {exchange.rest_url})", flush=True)
            stopper = asyncio.create_task(stop.wait())
            finisher = asyncio.create_task(exchange.tape.finished_event.wait())
            pending = {stopper, finisher}
            while stopper in pending:
                _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                if finisher not in pending and (exit_on_finish or exchange.stats.error):
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
            if stats.error:
                print(f"replay-exchange: {stats.error}", file=sys.stderr)
                return 1
            return 0
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = config_from_args(args)
        return asyncio.run(_serve(config, args.ready_file, args.exit_on_finish))
    except ReplayError as exc:
        print(f"replay-exchange: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"replay-exchange: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.ready_file is not None:
            args.ready_file.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
