"""The replay exchange: one aiohttp app serving the tape over WebSocket and REST, started and
closed as a unit (``async with ReplayExchange(cfg) as ex: ... ex.ws_url``)."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from cryptopipe.replay.config import ReplayConfig
from cryptopipe.replay.connection import Connection
from cryptopipe.replay.network import Sampler, ServerClock
from cryptopipe.replay.rest import RestApi
from cryptopipe.replay.rest_depth import DepthApi
from cryptopipe.replay.rest_status import StatusApi
from cryptopipe.replay.sources.build import build_source
from cryptopipe.replay.tape import HistoryKind, ReplayStats, Tape
from cryptopipe.replay.ws import WebSocketEndpoint
from cryptopipe.schemas import DepthSnapshot
from cryptopipe.schemas.binance import AggTradeEvent, TradeEvent

log = logging.getLogger(__name__)


class ReplayExchange:
    """A local Binance Spot stand-in: ``async with ReplayExchange(cfg) as ex: ... ex.ws_url``."""

    def __init__(self, config: ReplayConfig | None = None) -> None:
        self.config = config or ReplayConfig()
        self.stats = ReplayStats()
        cfg = self.config
        #: The server's clock (offset, drift, step) and the REST delays (:mod:`.network`).
        self.clock = ServerClock(
            cfg.clock_offset_ms, cfg.clock_drift_ppm, cfg.clock_step_ms, cfg.clock_step_after_s
        )
        self.now_us = self.clock.now_us
        self.network = Sampler(cfg.network(), seed=cfg.seed)
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._tape: Tape | None = None
        self._tape_task: asyncio.Task[None] | None = None
        self._ws = WebSocketEndpoint(self)
        #: :attr:`connections` under its old name, which ingest's tests still read.
        self._connections = self._ws.connections

    @property
    def tape(self) -> Tape:
        if self._tape is None:
            raise RuntimeError("the replay exchange is not started")
        return self._tape

    def _url(self, scheme: str) -> str:
        host = self.config.host
        return f"{scheme}://[{host}]:{self.port}" if ":" in host else f"{scheme}://{host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return self._url("ws")

    @property
    def rest_url(self) -> str:
        return self._url("http")

    @property
    def connections(self) -> set[Connection]:
        """The WebSocket connections open now."""
        return self._ws.connections

    @property
    def symbols(self) -> frozenset[str]:
        return self.tape.symbols

    def history(self, symbol: str, kind: HistoryKind = "aggTrade") -> list[AggTradeEvent] | list[TradeEvent]:
        """What the tape has played for ``symbol`` so far (E/T in µs), as REST would serve it.

        ``kind="aggTrade"`` (default) is the REST aggTrades history (derived 1:1 from trades when the
        source has none); ``kind="trade"`` lists the ``@trade`` events.
        """
        return self.tape.history(symbol, kind)

    def book(self, symbol: str, limit: int = 5000) -> DepthSnapshot | None:
        """The book ``/api/v3/depth`` would serve for ``symbol`` now, or None while none is known.

        For checks: no REST weight is spent and no snapshot fault knob plays.
        """
        state = self.tape.depth.books.get(symbol.upper())
        if state is None or state.book is None:
            return None
        return state.book.snapshot(symbol.upper(), limit)

    async def wait_finished(self, timeout_s: float | None = None) -> bool:
        """Wait until the tape has played to its end (True) or ``timeout_s`` passed (False)."""
        try:
            await asyncio.wait_for(self.tape.finished_event.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def server_shutdown(self) -> None:
        """Send ``serverShutdown`` to every open connection and close them (new ones are accepted)."""
        await self._ws.server_shutdown()

    async def __aenter__(self) -> ReplayExchange:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        source = await asyncio.to_thread(build_source, self.config)
        await asyncio.to_thread(lambda: (source.symbols, source.agg_symbols))
        self._tape = Tape(self.config, source, self.stats, self.now_us)
        rest = RestApi(self)
        app = web.Application(middlewares=[rest.delay_middleware])
        self._ws.add_routes(app.router)
        rest.add_routes(app.router)
        DepthApi(self).add_routes(app.router)
        StatusApi(self).add_routes(app.router)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self._tape_task = asyncio.create_task(self._tape.run())
        log.info("replay exchange on %s (source %s)", self.ws_url, source.name)

    async def aclose(self) -> None:
        if self._tape_task is not None:
            self._tape_task.cancel()
            await asyncio.gather(self._tape_task, return_exceptions=True)
        await self._ws.aclose()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
