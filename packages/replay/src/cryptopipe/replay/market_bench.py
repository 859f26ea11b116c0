"""How many messages/s the replay exchange serves for a whole synthetic market, and its CPU per message.

``python -m cryptopipe.replay.market_bench --market-size 1500 --count 20000 --json out.json`` starts
``replay-exchange`` as its own process (synthetic book, ``--speed max``), subscribes every symbol's
``@trade`` and ``@depth@100ms`` over as many connections as Binance's 1,024 streams allow, counts
the frames until the tape ends, and reads the exchange process's CPU time from ``/proc`` (Linux).
The clients only count frames; they share the machine, not the exchange's process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp

from cryptopipe.replay.bench import report

STREAMS_PER_CONNECTION = 1000


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (Linux ``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _client(url: str, streams: list[str], counts: list[int], done: asyncio.Event) -> None:
    async with aiohttp.ClientSession() as session, session.ws_connect(url, max_msg_size=0) as ws:
        await ws.send_str(json.dumps({"method": "SUBSCRIBE", "params": streams, "id": 1}))
        slot = len(counts)
        counts.append(0)
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            counts[slot] += 1
            if done.is_set():
                break


async def _measure(ws_url: str, symbols: list[str], pid: int) -> dict[str, Any]:
    streams = [f"{s.lower()}@{kind}" for s in symbols for kind in ("trade", "depth@100ms")]
    shards = [streams[i : i + STREAMS_PER_CONNECTION] for i in range(0, len(streams), STREAMS_PER_CONNECTION)]
    counts: list[int] = []
    done = asyncio.Event()
    cpu0, wall0 = _cpu_seconds(pid), time.perf_counter()
    tasks = [asyncio.create_task(_client(f"{ws_url}/stream", shard, counts, done)) for shard in shards]
    last, still = -1, 0
    while still < 20:  # the tape has ended when no frame arrived for 1 s
        await asyncio.sleep(0.05)
        total = sum(counts)
        still = still + 1 if total == last and total > 0 else 0
        last = total
    done.set()
    wall = time.perf_counter() - wall0 - 1.0
    cpu = _cpu_seconds(pid) - cpu0
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    frames = sum(counts)
    return {
        "symbols": len(symbols),
        "connections": len(shards),
        "frames": frames,
        "seconds": round(wall, 2),
        "frames_per_second": round(frames / wall),
        "exchange_cpu_seconds": round(cpu, 2),
        "exchange_cpu_us_per_frame": round(cpu / frames * 1e6, 1) if frames else None,
    }


def run(market_size: int, count: int, rate: float, changes_per_trade: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        ready = Path(tmp) / "ready.json"
        argv = [sys.executable, "-m", "cryptopipe.replay.cli", "--book", "--market-size", str(market_size)]
        argv += ["--count", str(count), "--rate", str(rate), "--speed", "max", "--no-burst"]
        argv += ["--book-changes-per-trade", str(changes_per_trade), "--ready-file", str(ready)]
        argv += ["--rest-weight-limit", "0"]
        with subprocess.Popen(argv, stdout=subprocess.DEVNULL) as server:
            try:
                deadline = time.monotonic() + 60
                while not ready.exists():
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("replay-exchange did not start")
                    time.sleep(0.05)
                where = json.loads(ready.read_text())
                info = asyncio.run(_exchange_info(where["rest_url"]))
                symbols = [s["symbol"] for s in info["symbols"] if s["status"] == "TRADING"]
                result = asyncio.run(_measure(where["ws_url"], symbols, server.pid))
            finally:
                server.terminate()
    result.update(trades=count, rate=rate, changes_per_trade=changes_per_trade)
    return result


async def _exchange_info(rest_url: str) -> Any:
    async with aiohttp.ClientSession() as session, session.get(f"{rest_url}/api/v3/exchangeInfo") as response:
        return await response.json()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cryptopipe.replay.market_bench", description=__doc__)
    parser.add_argument("--market-size", type=int, default=1500)
    parser.add_argument("--count", type=int, default=20_000, help="trades to play")
    parser.add_argument("--rate", type=float, default=2000.0, help="trades/s on the market's own clock")
    parser.add_argument("--changes-per-trade", type=float, default=3.0)
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = parser.parse_args(argv)
    result = run(args.market_size, args.count, args.rate, args.changes_per_trade)
    line = (
        f"replay-exchange market bench: {result['symbols']} symbols, {result['connections']} connections, "
        f"{result['frames']} frames (trade + depth@100ms) in {result['seconds']} s = "
        f"{result['frames_per_second']} frames/s; exchange CPU {result['exchange_cpu_us_per_frame']} µs/frame"
    )
    return report(line, result, args.json)


if __name__ == "__main__":
    sys.exit(main())
