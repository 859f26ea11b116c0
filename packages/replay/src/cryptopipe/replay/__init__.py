"""A local exchange that speaks Binance Spot's WebSocket and REST protocol.

The real ingest code runs unchanged against it: it replays data.binance.vision trade files,
recorded WebSocket frames or a seeded synthetic market (with order books, up to a whole market of
symbols), paced like the original, with fault knobs (clock offset, delay, dropped connections,
serverShutdown, depth gaps and bad snapshots), a REST aggTrades history that is exactly what the
stream sent, so backfill can be checked id for id, and a REST depth that is the book the depth
stream built::

    async with ReplayExchange(ReplayConfig(replay_files=("btcusdt_20240808.gz",), speed="max")) as ex:
        ...connect to f"{ex.ws_url}/stream?streams=btcusdt@trade"...

    with run_in_thread(ReplayConfig(symbols=("BTCUSDT",), rate=100, count=500)) as ex:
        ...ex.rest_url, ex.stats.finished, ex.history("BTCUSDT")...
"""

from cryptopipe.replay.config import ReplayConfig
from cryptopipe.replay.errors import FetchError, ReplayConfigError, ReplayError, SourceError
from cryptopipe.replay.exchange import ReplayExchange
from cryptopipe.replay.tape import ReplayStats
from cryptopipe.replay.threaded import ThreadedExchange, run_in_thread

__all__ = [
    "FetchError",
    "ReplayConfig",
    "ReplayConfigError",
    "ReplayError",
    "ReplayExchange",
    "ReplayStats",
    "SourceError",
    "ThreadedExchange",
    "run_in_thread",
]
