"""How many frames/s the replay exchange pushes to one client at ``--speed max``.

``python -m cryptopipe.replay.bench --count 200000 --json bench.json`` prints one line and writes
the numbers as JSON. The client is an aiohttp WebSocket in the same process (it shares the CPU
with the server, like a local ingest would); it only counts frames, it does not parse them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp

from cryptopipe.replay.config import ReplayConfig
from cryptopipe.replay.exchange import ReplayExchange


async def measure(count: int, symbols: tuple[str, ...], combined: bool) -> dict[str, Any]:
    config = ReplayConfig(symbols=symbols, count=count, burst=False, speed="max", seed=0)
    streams = "/".join(f"{s.lower()}@trade" for s in symbols)
    path = f"/stream?streams={streams}" if combined else f"/ws/{streams}"
    async with (
        ReplayExchange(config) as ex,
        aiohttp.ClientSession() as session,
        session.ws_connect(ex.ws_url + path, max_msg_size=0) as ws,
    ):
        received = 0
        started = time.perf_counter()
        cpu_started = time.process_time()
        while received < count:
            msg = await ws.receive()
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise RuntimeError(f"connection ended after {received} frames: {msg}")
            received += 1
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
    return {
        "frames": received,
        "seconds": round(elapsed, 3),
        "frames_per_second": round(received / elapsed),
        "cpu_seconds": round(cpu, 3),
        "frames_per_cpu_second": round(received / cpu) if cpu > 0 else None,
        "symbols": list(symbols),
        "endpoint": "combined" if combined else "raw",
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cryptopipe.replay.bench", description=__doc__)
    parser.add_argument("--count", type=int, default=200_000, help="trades to play")
    parser.add_argument("--symbols", default="BTCUSDT,ETHUSDT")
    parser.add_argument("--raw", action="store_true", help="use /ws/<streams> instead of /stream")
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = parser.parse_args(argv)
    symbols = tuple(s.strip().upper() for s in args.symbols.split(",") if s.strip())
    result = asyncio.run(measure(args.count, symbols, not args.raw))
    line = (
        f"replay-exchange bench: {result['frames']} frames in {result['seconds']} s = "
        f"{result['frames_per_second']} frames/s ({result['endpoint']} stream, one client); "
        f"{result['frames_per_cpu_second']} frames per CPU second (server and client together)"
    )
    return report(line, result, args.json)


def report(line: str, result: dict[str, Any], path: Path | None) -> int:
    """Print a bench's one line and, given a path, write its figures there as JSON."""
    print(line)
    if path is not None:
        path.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
