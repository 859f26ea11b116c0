"""Configuration of one replay exchange: the source, the pacing, the clock and the fault knobs."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptopipe.replay.errors import ReplayConfigError

ClockMode = Literal["live", "original"]

#: data.binance.vision's root; a test points it at a dead port to exercise the failure path.
BINANCE_VISION_URL = "https://data.binance.vision"


def parse_speed(value: str | float) -> float:
    """``"max"`` -> ``inf`` (as fast as the socket takes), else a positive factor (1 = recorded pace)."""
    if isinstance(value, str):
        if value.strip().lower() == "max":
            return math.inf
        try:
            value = float(value)
        except ValueError:
            raise ReplayConfigError("speed", f"expected a positive number or 'max', got {value!r}") from None
    if not value > 0:
        raise ReplayConfigError("speed", f"must be > 0 (or 'max'), got {value!r}")
    return float(value)


@dataclass(frozen=True)
class ReplayConfig:
    """Everything a :class:`~cryptopipe.replay.server.ReplayExchange` needs.

    Sources: ``replay_files`` (``PATH`` or ``SYMBOL:PATH``; data.binance.vision CSV/zip or recorded
    frames) plus ``fetch`` (``SYMBOL:DATE[:trades|aggTrades]``). With neither, the seeded synthetic
    generator plays ``symbols`` at ``rate`` messages/s (``count`` trades, ``None`` = endless).
    """

    # --- sources -------------------------------------------------------------------------------
    replay_files: tuple[str | Path, ...] = ()
    fetch: tuple[str, ...] = ()
    cache_dir: Path | None = None
    fetch_base_url: str = BINANCE_VISION_URL
    symbols: tuple[str, ...] = ("BTCUSDT", "ETHUSDT")
    rate: float = 20.0
    seed: int = 0
    burst: bool = True
    count: int | None = None
    skip_bad_lines: bool = False
    #: Recorded depth/bookTicker frames go verbatim to subscribers of those streams.
    passthrough: bool = True
    # --- pacing and clock ----------------------------------------------------------------------
    speed: float | Literal["max"] = 1.0
    clock: ClockMode = "live"
    clock_offset_ms: int = 0
    loop: bool = False
    start_on_subscribe: bool = True
    # --- network and faults --------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = 0
    delay_ms: int = 0
    drop_after: int | None = None
    ping_interval_s: float = 20.0
    pong_timeout_s: float = 60.0
    max_incoming_per_s: int = 5
    max_streams: int = 1024
    connection_lifetime_s: float = 24 * 3600.0
    #: Per connection: after this many seconds send ``serverShutdown`` and close (None = never).
    shutdown_after_s: float | None = None
    #: Frames buffered per connection before a slow client is disconnected.
    queue_size: int = 10_000
    #: At ``speed=max`` the tape waits this long for a full client queue before dropping the client.
    slow_client_timeout_s: float = 10.0
    #: aggTrades kept per symbol for REST backfill and :meth:`history`.
    history_limit: int = 2_000_000

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "replay_files", tuple(self.replay_files))
        set_(self, "fetch", tuple(self.fetch))
        set_(self, "symbols", tuple(s.upper() for s in self.symbols))
        set_(self, "speed", parse_speed(self.speed))
        if self.cache_dir is not None:
            set_(self, "cache_dir", Path(self.cache_dir))
        if self.clock not in ("live", "original"):
            raise ReplayConfigError("clock", f"must be 'live' or 'original', got {self.clock!r}")
        if not self.rate > 0:
            raise ReplayConfigError("rate", f"must be > 0, got {self.rate!r}")
        if not self.symbols and not self.replay_files and not self.fetch:
            raise ReplayConfigError("symbols", "the synthetic source needs at least one symbol")
        for name in ("delay_ms", "port"):
            if getattr(self, name) < 0:
                raise ReplayConfigError(name, f"must be >= 0, got {getattr(self, name)!r}")
        for name in ("drop_after", "count"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ReplayConfigError(name, f"must be >= 1 or None, got {value!r}")
        for name in ("ping_interval_s", "pong_timeout_s", "connection_lifetime_s", "slow_client_timeout_s"):
            if not getattr(self, name) > 0:
                raise ReplayConfigError(name, f"must be > 0, got {getattr(self, name)!r}")
        for name in ("max_incoming_per_s", "max_streams", "queue_size", "history_limit"):
            if getattr(self, name) < 1:
                raise ReplayConfigError(name, f"must be >= 1, got {getattr(self, name)!r}")

    @property
    def paced(self) -> bool:
        """False at ``speed=max``: the tape then waits for the slowest subscriber instead of sleeping."""
        return not math.isinf(float(self.speed))
