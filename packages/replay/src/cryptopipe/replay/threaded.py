"""The replay exchange on a background thread with its own event loop, for synchronous code
(``with run_in_thread(cfg) as ex: ... ex.rest_url, ex.history("BTCUSDT")``)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from cryptopipe.replay.config import ReplayConfig
from cryptopipe.replay.exchange import ReplayExchange
from cryptopipe.replay.tape import HistoryKind, ReplayStats
from cryptopipe.schemas import DepthSnapshot
from cryptopipe.schemas.binance import AggTradeEvent, TradeEvent


class ThreadedExchange:
    """A :class:`ReplayExchange` running on its own event loop thread, for synchronous code."""

    def __init__(self, config: ReplayConfig) -> None:
        self.config = config
        self._exchange: ReplayExchange | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._finished = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="replay-exchange", daemon=True)

    @property
    def exchange(self) -> ReplayExchange:
        if self._exchange is None:
            raise RuntimeError("the replay exchange is not started")
        return self._exchange

    @property
    def ws_url(self) -> str:
        return self.exchange.ws_url

    @property
    def rest_url(self) -> str:
        return self.exchange.rest_url

    @property
    def port(self) -> int:
        return self.exchange.port

    @property
    def stats(self) -> ReplayStats:
        return self.exchange.stats

    def _call(self, fn: Callable[[], Any]) -> Any:
        assert self._loop is not None

        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=30)

    def history(self, symbol: str, kind: HistoryKind = "aggTrade") -> list[AggTradeEvent] | list[TradeEvent]:
        return self._call(lambda: self.exchange.history(symbol, kind))  # type: ignore[no-any-return]

    def book(self, symbol: str, limit: int = 5000) -> DepthSnapshot | None:
        """See :meth:`ReplayExchange.book`."""
        return self._call(lambda: self.exchange.book(symbol, limit))  # type: ignore[no-any-return]

    def wait_finished(self, timeout_s: float | None = None) -> bool:
        """Block until the tape has played to its end (True) or ``timeout_s`` passed (False)."""
        return self._finished.wait(timeout_s)

    def server_shutdown(self) -> None:
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(self.exchange.server_shutdown(), self._loop).result(timeout=30)

    def start(self) -> ThreadedExchange:
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            exchange = ReplayExchange(self.config)
            await exchange.start()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._exchange = exchange
        exchange.tape.on_finished.append(self._finished.set)
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await exchange.aclose()


@contextmanager
def run_in_thread(config: ReplayConfig | None = None) -> Iterator[ThreadedExchange]:
    """``with run_in_thread(cfg) as ex:`` a started exchange on a background thread, stopped on exit."""
    handle = ThreadedExchange(config or ReplayConfig()).start()
    try:
        yield handle
    finally:
        handle.stop()
