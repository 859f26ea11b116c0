"""The replay exchange's former single module, kept so that its import paths still work.

The exchange now lives in :mod:`.exchange` (the app), :mod:`.ws` and :mod:`.connection` (WebSocket),
:mod:`.rest` (REST) and :mod:`.threaded` (the background-thread wrapper); import from there or from
:mod:`cryptopipe.replay`.
"""

from cryptopipe.replay.connection import Connection, text_frame
from cryptopipe.replay.exchange import ReplayExchange
from cryptopipe.replay.rest import RestError
from cryptopipe.replay.symbols import split_symbol
from cryptopipe.replay.threaded import ThreadedExchange, run_in_thread
from cryptopipe.replay.wire import normalise_stream

__all__ = [
    "Connection",
    "ReplayExchange",
    "RestError",
    "ThreadedExchange",
    "normalise_stream",
    "run_in_thread",
    "split_symbol",
    "text_frame",
]
