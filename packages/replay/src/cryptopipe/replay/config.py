"""Configuration of one replay exchange: the source, the pacing, the clock and the fault knobs.

:class:`ReplayConfig` is what the exchange runs on; :class:`ReplaySettings` is the same read from
flags and ``REPLAY_*`` environment variables, for the ``replay-exchange`` command and ``up``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import field_validator
from pydantic_settings import BaseSettings, NoDecode

from cryptopipe.replay.errors import ReplayConfigError
from cryptopipe.replay.network import Distribution, NetworkConditions
from cryptopipe.schemas import SETTINGS_CONFIG, setting

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
    """Everything a :class:`~cryptopipe.replay.exchange.ReplayExchange` needs.

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
    #: Synthetic: play an order book (depth diffs, bookTicker, REST depth); trades hit its touch.
    book: bool = False
    #: Synthetic: order-book changes (orders added or cancelled) per trade, on average.
    book_changes_per_trade: float = 3.0
    #: Synthetic: a whole market of this many TRADING symbols (``symbols`` first), 0 = ``symbols`` only.
    market_size: int = 0
    #: Synthetic: Zipf exponent of activity by symbol rank (0 = every symbol equally busy).
    market_skew: float = 1.0
    # --- pacing and clock ----------------------------------------------------------------------
    speed: float | Literal["max"] = 1.0
    clock: ClockMode = "live"
    clock_offset_ms: int = 0
    #: The server clock gains this many ppm, and steps by ``clock_step_ms`` after ``clock_step_after_s``.
    clock_drift_ppm: float = 0.0
    clock_step_ms: float = 0.0
    clock_step_after_s: float | None = None
    loop: bool = False
    start_on_subscribe: bool = True
    # --- network and faults --------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = 0
    delay_ms: int = 0
    #: Jitter of every delay (:mod:`.network`): normal (its standard deviation) or pareto (the
    #: mean excess over the base); each direction's base is ``delay_ms`` unless given its own.
    jitter_ms: float = 0.0
    jitter_distribution: Distribution = "normal"
    rest_request_delay_ms: float | None = None
    rest_response_delay_ms: float | None = None
    ws_delay_ms: float | None = None
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
    #: aggTrades (and trades) kept per symbol for REST backfill and :meth:`history`: at most this many,
    history_limit: int = 1_000_000
    #: ... and only those played in the last this many seconds (wall time); see replay.history.
    history_seconds: float = 300.0
    #: REST request weight allowed per minute (Binance's REQUEST_WEIGHT limit); 0 = unlimited.
    rest_weight_limit: int = 6000
    # --- order-book faults ---------------------------------------------------------------------
    #: Per symbol and depth stream, every Nth depth event is not sent (a gap); None = never.
    depth_drop_every: int | None = None
    #: The depth event whose U..u holds this update id is not sent (a gap), on every depth stream.
    depth_drop_update_id: int | None = None
    #: ``/api/v3/depth`` answers this many ms late (the book is taken when the request arrives).
    depth_snapshot_delay_ms: int = 0
    #: The first K ``/api/v3/depth`` requests per symbol fail with HTTP 503.
    depth_snapshot_fail: int = 0
    #: The next K requests per symbol get a book older than any depth event sent since a client
    #: subscribed (``lastUpdateId`` below the first buffered ``U``).
    depth_snapshot_stale: int = 0

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
        if not self.symbols and not self.replay_files and not self.fetch and not self.market_size:
            raise ReplayConfigError("symbols", "the synthetic source needs at least one symbol")
        for name in (
            "delay_ms",
            "port",
            "market_size",
            "rest_weight_limit",
            "depth_snapshot_delay_ms",
            "depth_snapshot_fail",
            "depth_snapshot_stale",
        ):
            if getattr(self, name) < 0:
                raise ReplayConfigError(name, f"must be >= 0, got {getattr(self, name)!r}")
        try:
            self.network()
        except ValueError as exc:
            raise ReplayConfigError("jitter_ms/jitter_distribution/*_delay_ms", str(exc)) from None
        if not self.book_changes_per_trade >= 0 or not self.market_skew >= 0:
            raise ReplayConfigError("book_changes_per_trade/market_skew", "must be >= 0")
        for name in ("drop_after", "count", "depth_drop_every", "depth_drop_update_id"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ReplayConfigError(name, f"must be >= 1 or None, got {value!r}")
        for name in (
            "ping_interval_s",
            "pong_timeout_s",
            "connection_lifetime_s",
            "slow_client_timeout_s",
            "history_seconds",
        ):
            if not getattr(self, name) > 0:
                raise ReplayConfigError(name, f"must be > 0, got {getattr(self, name)!r}")
        for name in ("max_incoming_per_s", "max_streams", "queue_size", "history_limit"):
            if getattr(self, name) < 1:
                raise ReplayConfigError(name, f"must be >= 1, got {getattr(self, name)!r}")

    def network(self) -> NetworkConditions:
        """The delay distribution of each direction (REST request, REST response, WS frame)."""
        return NetworkConditions.build(
            self.delay_ms,
            self.jitter_ms,
            self.jitter_distribution,
            rest_request_ms=self.rest_request_delay_ms,
            rest_response_ms=self.rest_response_delay_ms,
            ws_ms=self.ws_delay_ms,
        )

    @property
    def paced(self) -> bool:
        """False at ``speed=max``: the tape then waits for the slowest subscriber instead of sleeping."""
        return not math.isinf(float(self.speed))


def _split(value: object) -> object:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


#: The defaults both classes share are ReplayConfig's.
_DEFAULT = ReplayConfig()


class ReplaySettings(BaseSettings):
    """``cryptopipe replay-exchange``'s settings: flags, else ``REPLAY_*`` variables, else defaults.

    The command-line face of :class:`ReplayConfig` (which tests and embedders build directly);
    :meth:`config` turns one into the other, and ``up`` starts the exchange with these as
    environment variables.
    """

    model_config = SETTINGS_CONFIG

    replay_files: Annotated[tuple[str, ...], NoDecode] = setting("REPLAY_FILES", ())
    """Comma list of `[SYMBOL:]PATH`: data.binance.vision trades/aggTrades .csv/.zip, or recorded `<ns>
    <frame>` lines (gzip or plain). Empty: the synthetic source."""
    fetch: Annotated[tuple[str, ...], NoDecode] = setting("REPLAY_FETCH", ())
    """Comma list of `SYMBOL:DATE[:trades|aggTrades]` days downloaded from data.binance.vision into
    REPLAY_CACHE_DIR (needs internet)."""
    cache_dir: Path | None = setting("REPLAY_CACHE_DIR", _DEFAULT.cache_dir)
    """Where REPLAY_FETCH stores files."""
    fetch_base_url: str = setting("REPLAY_FETCH_BASE_URL", _DEFAULT.fetch_base_url)
    """Root of data.binance.vision (a mirror, or a dead port in tests)."""
    symbols: Annotated[tuple[str, ...], NoDecode] = setting("REPLAY_SYMBOLS", _DEFAULT.symbols)
    """Synthetic source: comma list of symbols."""
    rate: float = setting("REPLAY_RATE", _DEFAULT.rate, gt=0)
    """Synthetic: mean messages/s, all symbols."""
    seed: int = setting("REPLAY_SEED", _DEFAULT.seed)
    """Synthetic: random seed."""
    burst: bool = setting("REPLAY_BURST", _DEFAULT.burst)
    """Synthetic: occasional bursts (false: steady Poisson, for benchmarks)."""
    count: int | None = setting("REPLAY_COUNT", _DEFAULT.count, ge=1)
    """Synthetic: stop after N trades."""
    book: bool = setting("REPLAY_BOOK", _DEFAULT.book)
    """Synthetic: play an order book per symbol (depth@100ms and @depth diffs, bookTicker, REST
    depth); trades happen at its touch and consume the levels they hit. Off: trades only, priced by
    a random walk (the cheapest tape, for trade benchmarks)."""
    book_changes_per_trade: float = setting(
        "REPLAY_BOOK_CHANGES_PER_TRADE", _DEFAULT.book_changes_per_trade, ge=0
    )
    """Synthetic: order-book changes (orders added or cancelled) per trade, on average."""
    market_size: int = setting("REPLAY_MARKET_SIZE", _DEFAULT.market_size, ge=0)
    """Synthetic: a whole market of N TRADING symbols (REPLAY_SYMBOLS first, then made-up names),
    plus N/100 (at least 1) non-TRADING ones in exchangeInfo; 0 = REPLAY_SYMBOLS only."""
    market_skew: float = setting("REPLAY_MARKET_SKEW", _DEFAULT.market_skew, ge=0)
    """Synthetic: Zipf exponent of activity by symbol rank (1: the busiest symbol has N times the
    Nth one's rate; 0: all equally busy)."""
    skip_bad_lines: bool = setting("REPLAY_SKIP_BAD_LINES", _DEFAULT.skip_bad_lines)
    """Skip and count malformed lines instead of failing with file:line."""
    passthrough: bool = setting("REPLAY_PASSTHROUGH", _DEFAULT.passthrough)
    """Send recorded depth/bookTicker frames verbatim to their subscribers."""
    speed: float = setting("REPLAY_SPEED", _DEFAULT.speed)
    """1 = recorded pace, N = N times faster, `max` = as fast as the clients read."""
    clock: ClockMode = setting("REPLAY_CLOCK", _DEFAULT.clock)
    """`live`: re-stamp event/trade times to now keeping the spacing; `original`: keep the recorded times."""
    clock_offset_ms: int = setting("REPLAY_CLOCK_OFFSET_MS", _DEFAULT.clock_offset_ms)
    """The server clock runs N ms ahead."""
    clock_drift_ppm: float = setting("REPLAY_CLOCK_DRIFT_PPM", _DEFAULT.clock_drift_ppm)
    """The server clock gains N parts per million (negative: loses)."""
    clock_step_ms: float = setting("REPLAY_CLOCK_STEP_MS", _DEFAULT.clock_step_ms)
    """The server clock steps by N ms once REPLAY_CLOCK_STEP_AFTER_S have passed."""
    clock_step_after_s: float | None = setting("REPLAY_CLOCK_STEP_AFTER_S", _DEFAULT.clock_step_after_s, ge=0)
    """Seconds after start at which the server clock steps by REPLAY_CLOCK_STEP_MS."""
    loop: bool = setting("REPLAY_LOOP", _DEFAULT.loop)
    """Restart the source at its end (ids keep growing)."""
    start_on_subscribe: bool = setting("REPLAY_START_ON_SUBSCRIBE", _DEFAULT.start_on_subscribe)
    """Start the tape when the first client subscribes."""
    exit_on_finish: bool = setting("REPLAY_EXIT_ON_FINISH", False)
    """Exit once the tape has played to its end."""
    host: str = setting("REPLAY_HOST", _DEFAULT.host)
    """Bind address (loopback by default)."""
    port: int = setting("REPLAY_PORT", _DEFAULT.port, ge=0, le=65535)
    """0 = a free port."""
    delay_ms: int = setting("REPLAY_DELAY_MS", _DEFAULT.delay_ms, ge=0)
    """Delay each WebSocket frame, and each REST direction, by this much."""
    jitter_ms: float = setting("REPLAY_JITTER_MS", _DEFAULT.jitter_ms, ge=0)
    """Jitter of every delay: the standard deviation (normal, cut at 0) or the mean excess over the
    delay (pareto, a heavy tail)."""
    jitter_distribution: Distribution = setting("REPLAY_JITTER_DISTRIBUTION", _DEFAULT.jitter_distribution)
    """`normal` or `pareto`."""
    rest_request_delay_ms: float | None = setting("REPLAY_REST_REQUEST_DELAY_MS", None, ge=0)
    """A REST request's own delay (default: REPLAY_DELAY_MS); with the response's, an asymmetric path."""
    rest_response_delay_ms: float | None = setting("REPLAY_REST_RESPONSE_DELAY_MS", None, ge=0)
    """A REST response's own delay (default: REPLAY_DELAY_MS)."""
    ws_delay_ms: float | None = setting("REPLAY_WS_DELAY_MS", None, ge=0)
    """A WebSocket frame's own delay (default: REPLAY_DELAY_MS); frames keep their order."""
    drop_after: int | None = setting("REPLAY_DROP_AFTER", _DEFAULT.drop_after, ge=1)
    """Drop each connection after N frames; the client always misses at least the next trade."""
    ping_interval_s: float = setting("REPLAY_PING_INTERVAL_S", _DEFAULT.ping_interval_s, gt=0)
    """Seconds between server pings."""
    pong_timeout_s: float = setting("REPLAY_PONG_TIMEOUT_S", _DEFAULT.pong_timeout_s, gt=0)
    """Close when no pong for this long."""
    shutdown_after_s: float | None = setting("REPLAY_SHUTDOWN_AFTER_S", _DEFAULT.shutdown_after_s, gt=0)
    """Send `serverShutdown` and close each connection after N seconds."""
    queue_size: int = setting("REPLAY_QUEUE_SIZE", _DEFAULT.queue_size, ge=1)
    """Frames buffered per slow client."""
    rest_weight_limit: int = setting("REPLAY_REST_WEIGHT_LIMIT", _DEFAULT.rest_weight_limit, ge=0)
    """REST request weight allowed per 60 s (sliding); over it: HTTP 429 with Retry-After. Every
    answer carries X-MBX-USED-WEIGHT-1M. 0 = unlimited."""
    depth_drop_every: int | None = setting("REPLAY_DEPTH_DROP_EVERY", _DEFAULT.depth_drop_every, ge=1)
    """Fault: per symbol and depth stream, every Nth depth event is not sent (a gap for the client;
    the exchange's book still moves)."""
    depth_drop_update_id: int | None = setting(
        "REPLAY_DEPTH_DROP_UPDATE_ID", _DEFAULT.depth_drop_update_id, ge=1
    )
    """Fault: the depth event whose U..u holds this update id is not sent, on every depth stream."""
    depth_snapshot_delay_ms: int = setting(
        "REPLAY_DEPTH_SNAPSHOT_DELAY_MS", _DEFAULT.depth_snapshot_delay_ms, ge=0
    )
    """Fault: /api/v3/depth answers N ms late, with the book as it was when the request arrived."""
    depth_snapshot_fail: int = setting("REPLAY_DEPTH_SNAPSHOT_FAIL", _DEFAULT.depth_snapshot_fail, ge=0)
    """Fault: the first K /api/v3/depth requests per symbol fail with HTTP 503 (code -1001)."""
    depth_snapshot_stale: int = setting("REPLAY_DEPTH_SNAPSHOT_STALE", _DEFAULT.depth_snapshot_stale, ge=0)
    """Fault: the next K /api/v3/depth requests per symbol (after the failed ones) get a book from
    before any client subscribed to its depth: lastUpdateId below the first buffered U."""
    history_limit: int = setting("REPLAY_HISTORY_LIMIT", _DEFAULT.history_limit, ge=1)
    """REST trade history: at most N trades kept per symbol (and per kind, aggTrade and trade)."""
    history_seconds: float = setting("REPLAY_HISTORY_SECONDS", _DEFAULT.history_seconds, gt=0)
    """REST trade history: trades played more than N seconds ago (wall time) are let go, so memory
    is flat at about rate x N x 450 bytes. A backfill after a longer outage than this is partial."""
    ready_file: Path | None = setting("REPLAY_READY_FILE", None)
    """Write `{port, ws_url, rest_url, pid}` JSON here once listening (removed at exit)."""

    @field_validator("replay_files", "fetch", mode="before")
    @classmethod
    def _lists(cls, value: object) -> object:
        return _split(value)

    @field_validator("symbols", mode="before")
    @classmethod
    def _symbols(cls, value: object) -> object:
        value = _split(value)
        if isinstance(value, list | tuple):
            return tuple(str(symbol).strip().upper() for symbol in value if str(symbol).strip())
        return value

    @field_validator("speed", mode="before")
    @classmethod
    def _speed(cls, value: object) -> object:
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return parse_speed(value if isinstance(value, str) else float(value))
        return value

    def config(self) -> ReplayConfig:
        """The exchange's :class:`ReplayConfig` (the fields both share, by name); raises
        :class:`ReplayConfigError` for a bad mix."""
        shared = [f.name for f in dataclasses.fields(ReplayConfig) if f.name in type(self).model_fields]
        return ReplayConfig(**{name: getattr(self, name) for name in shared})
