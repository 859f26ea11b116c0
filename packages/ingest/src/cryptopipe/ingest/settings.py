"""Ingest's settings: which exchange, which symbols, how to behave when things go wrong.

Precedence: CLI flag > environment variable > ``.env`` file > default. Every field names its
environment variable explicitly; the table lives in docs (from /work/notes/ingest-env.md).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode

from cryptopipe.ingest.book.weight import depth_weight
from cryptopipe.schemas import PRICES, SETTINGS_CONFIG, setting
from cryptopipe.schemas import load_settings as _load_settings
from cryptopipe.schemas.config import distinct_symbols

IngestMode = Literal["aggTrade", "trade"]
#: Which diff-depth stream keeps the order books: none, ``@depth@100ms`` or ``@depth`` (1,000 ms).
DepthSpeed = Literal["off", "100ms", "1000ms"]
Compression = Literal["none", "lz4", "zstd", "snappy", "gzip"]


#: Binance's documented limits (Spot WebSocket streams).
BINANCE_MAX_STREAMS_PER_CONNECTION = 1024
BINANCE_MAX_CONTROL_MESSAGES_PER_SECOND = 5
BINANCE_MAX_CONNECT_ATTEMPTS_PER_5MIN = 300
BINANCE_MAX_CONNECTION_AGE_S = 24 * 3600
#: Binance Spot's REQUEST_WEIGHT limit per minute and IP (exchangeInfo's ``rateLimits``).
BINANCE_MAX_REQUEST_WEIGHT_PER_MINUTE = 6000
#: ``INGEST_SYMBOLS=all``: every TRADING spot symbol the exchange lists.
ALL_SYMBOLS = "all"


class IngestSettings(BaseSettings):
    """Everything ``cryptopipe ingest`` can be told. Kafka's own settings are in KafkaSettings."""

    model_config = SETTINGS_CONFIG

    ws_url: str = setting("BINANCE_WS_URL", "wss://stream.binance.com:9443")
    """Exchange WebSocket base URL (a trailing `/stream` or `/ws` is ignored). Combined streams with
    `timeUnit=MICROSECOND` are opened under it."""
    rest_url: str = setting("BINANCE_REST_URL", "https://api.binance.com")
    """Exchange REST base URL, used for the aggTrades gap backfill."""
    symbols: Annotated[tuple[str, ...], NoDecode] = setting("INGEST_SYMBOLS", ("btcusdt", "ethusdt"))
    """Comma-separated symbols (case-insensitive, letters and digits; duplicates removed), or `all`:
    every `TRADING` spot symbol of `GET /api/v3/exchangeInfo`, read at start."""
    all_shard_index: int = setting("INGEST_ALL_SHARD_INDEX", 0, ge=0)
    """With INGEST_SYMBOLS=all and several ingest processes: this one takes every
    INGEST_ALL_SHARD_COUNT-th symbol of the sorted TRADING list, starting at this index."""
    all_shard_count: int = setting("INGEST_ALL_SHARD_COUNT", 1, ge=1)
    """With INGEST_SYMBOLS=all: how many ingest processes share the market (1 = this one takes all)."""
    mode: IngestMode = setting("INGEST_MODE", "aggTrade")
    """`aggTrade` (gaps are backfilled from REST) or `trade` (gaps can only be counted)."""

    metrics_port: int = setting("INGEST_METRICS_PORT", 9101, ge=0, le=65535)
    """Prometheus `/metrics` port (0 = any free port)."""
    metrics_host: str = setting("INGEST_METRICS_HOST", "127.0.0.1")
    """Prometheus bind address (loopback by default)."""

    # --- producer -------------------------------------------------------------------------
    buffer_max_messages: int = setting("INGEST_BUFFER_MAX_MESSAGES", 200_000, ge=1, le=10_000_000)
    """Producer buffer bound (`queue.buffering.max.messages`): records held while the broker is
    away. Beyond it new trades are dropped, counted as `trades_lost{reason='buffer_full'}` and
    logged at ERROR."""
    delivery_timeout_ms: int = setting("INGEST_DELIVERY_TIMEOUT_MS", 0, ge=0)
    """`message.timeout.ms`; 0 = buffered trades never expire (only the buffer bound limits an outage)."""
    linger_ms: float = setting("INGEST_LINGER_MS", 1.0, ge=0, le=1000)
    """Producer `linger.ms`: records go in batches instead of one request each, so the broker, the
    consumer and ingest spend less CPU per trade. `bench prices --rate 2000` on Apache Kafka with
    ZGC, system latency p50/p95/p99 (ms): 0 ms 0.8/1.9-2.0/3.6-4.2 at 500-520 µs of CPU per trade
    (all processes), 1 ms 1.9/2.8/4.3 at 430 µs; in a busier hour 1 ms 2.2/3.6/5.9 and 3 ms
    4.0/5.7/7.1. At 20,000 msg/s (2 shards, 2 consumers) 1 ms kept up (lag at most 722 trades) and
    0 ms did not (13,831). At a live rate a trade waits up to this long; 0 sends each at once."""
    statistics_interval_ms: int = setting("INGEST_STATISTICS_INTERVAL_MS", 5000, ge=0, le=3_600_000)
    """Producer `statistics.interval.ms`: how often librdkafka's latency windows (queue, request
    round trip) become `cryptopipe_kafka_producer_latency_seconds`; 0 turns them off."""
    compression: Compression = setting("INGEST_COMPRESSION", "none")
    """Producer `compression.type`: none, lz4, zstd, snappy, gzip."""
    flush_timeout_s: float = setting("INGEST_FLUSH_TIMEOUT_S", 10.0, ge=0)
    """On shutdown, how long to wait for acknowledgements; the rest counts as
    `trades_lost{reason='shutdown'}`."""

    # --- topics ---------------------------------------------------------------------------
    topic_partitions: int = setting("INGEST_TOPIC_PARTITIONS", PRICES.partitions, ge=1)
    """Partitions of `prices` and `alerts` when ingest creates them (dead-letters: 1); see README,
    Partitioning."""
    topic_retention_ms: int = setting("INGEST_TOPIC_RETENTION_MS", 15 * 60 * 1000, ge=-1)
    """`retention.ms` of `prices` and `alerts` when ingest creates them (dead-letters: 7 days)."""
    topic_replication_factor: int = setting("INGEST_TOPIC_REPLICATION_FACTOR", -1, ge=-1)
    """Replication factor of created topics; -1 = the broker's default."""

    # --- connection behaviour -------------------------------------------------------------
    streams_per_connection: int = setting(
        "INGEST_STREAMS_PER_CONNECTION",
        BINANCE_MAX_STREAMS_PER_CONNECTION,
        ge=1,
        le=BINANCE_MAX_STREAMS_PER_CONNECTION,
    )
    """Streams per WebSocket connection (Binance's maximum is 1024); more symbols shard over more
    connections."""
    subscribe_batch: int = setting("INGEST_SUBSCRIBE_BATCH", 200, ge=1, le=1024)
    """Streams per SUBSCRIBE message (for streams that do not fit in the connection URL)."""
    control_messages_per_second: float = setting(
        "INGEST_CONTROL_MESSAGES_PER_SECOND", 3.0, gt=0, lt=BINANCE_MAX_CONTROL_MESSAGES_PER_SECOND
    )
    """Token-bucket rate of SUBSCRIBE messages per connection (Binance allows 5 incoming messages/s
    including pongs; must be < 5)."""
    connect_attempts_per_5min: int = setting(
        "INGEST_CONNECT_ATTEMPTS_PER_5MIN", 250, ge=1, le=BINANCE_MAX_CONNECT_ATTEMPTS_PER_5MIN
    )
    """Connection attempts allowed per sliding 5 minutes, all connections together (Binance: 300 per IP)."""
    backoff_initial_s: float = setting("INGEST_BACKOFF_INITIAL_S", 0.5, gt=0)
    """First reconnect delay ceiling (full jitter: the delay is uniform in [0, ceiling])."""
    backoff_max_s: float = setting("INGEST_BACKOFF_MAX_S", 30.0, gt=0)
    """Cap of the reconnect delay ceiling."""
    healthy_after_s: float = setting("INGEST_HEALTHY_AFTER_S", 60.0, ge=0)
    """A connection that lasted this long resets the backoff."""
    stale_after_s: float = setting("INGEST_STALE_AFTER_S", 30.0, gt=0)
    """No data frame for this long (pings do not count) => reconnect, counted as reason `stale`."""
    max_connection_age_s: float = setting(
        "INGEST_MAX_CONNECTION_AGE_S", 23 * 3600 + 50 * 60, gt=0, lt=BINANCE_MAX_CONNECTION_AGE_S
    )
    """Proactive rollover before Binance's 24 h limit: the successor connection is opened and
    subscribed before the old one is dropped."""
    connect_timeout_s: float = setting("INGEST_CONNECT_TIMEOUT_S", 10.0, gt=0)
    """Timeout of one WebSocket connection attempt (TCP + TLS + handshake)."""
    max_frame_bytes: int = setting("INGEST_MAX_FRAME_BYTES", 65_536, ge=1024)
    """Larger frames are dead-lettered (`frame_too_large`); frames over 16 MiB close the connection."""

    clock_skew: bool = setting("INGEST_CLOCK_SKEW", True)
    """Estimate the exchange clock's offset from REST /api/v3/time (NTP-style) and publish the
    skew-corrected network latency next to the raw one."""

    # --- order books ----------------------------------------------------------------------
    depth: DepthSpeed = setting("INGEST_DEPTH", "off")
    """Order books: `off` (trades only), `100ms` (`<symbol>@depth@100ms`) or `1000ms` (`<symbol>@depth`).
    Each symbol's book is kept in sync by Binance's procedure (buffer, REST snapshot, drop older,
    resync on a gap) and published to `book-updates` and `book-snapshots`."""
    book_ticker: bool = setting("INGEST_BOOK_TICKER", True)
    """With INGEST_DEPTH on, also subscribe `<symbol>@bookTicker` and check each book against it:
    where a ticker's update id equals the book's, best bid and ask must match
    (`cryptopipe_ingest_book_ticker_checks`). Tickers are not published."""
    depth_snapshot_limit: int = setting("INGEST_DEPTH_SNAPSHOT_LIMIT", 1000, ge=1, le=5000)
    """Levels per side of each `GET /api/v3/depth` snapshot; its weight is 5 (<=100), 25 (<=500),
    50 (<=1000) or 250 (<=5000)."""
    rest_weight_per_minute: int = setting(
        "INGEST_REST_WEIGHT_PER_MINUTE", 3000, ge=1, le=BINANCE_MAX_REQUEST_WEIGHT_PER_MINUTE
    )
    """REST weight the depth snapshots may spend per minute (Binance allows 6000 per IP, all
    clients together; `X-MBX-USED-WEIGHT-1M` and 429/418 `Retry-After` are honoured too). At 1000
    levels (weight 50) 3000 serves 60 snapshots a minute."""
    depth_snapshot_concurrency: int = setting("INGEST_DEPTH_SNAPSHOT_CONCURRENCY", 4, ge=1, le=64)
    """Snapshot requests in flight at once."""
    depth_buffer_max_events: int = setting("INGEST_DEPTH_BUFFER_MAX_EVENTS", 1000, ge=1)
    """Diff events one symbol buffers while it waits for a snapshot; older ones are dropped and
    counted (`in_resync_gap`). Only events from just before the snapshot was taken are needed
    (older ones are in it), so 1,000 (100 s of `@depth@100ms`) bounds memory in a resync storm of
    1,500 symbols without costing a refetch."""
    book_checkpoint_interval_s: float = setting("INGEST_BOOK_CHECKPOINT_INTERVAL_S", 60.0, ge=0)
    """How often each live book is written whole to the compacted `book-snapshots` (besides at each
    reset); 0 = only at resets."""

    # --- gap backfill ---------------------------------------------------------------------
    backfill_max_ids: int = setting("INGEST_BACKFILL_MAX_IDS", 100_000, ge=0)
    """Most ids one gap backfill fetches (the newest ones); older missing ids count as unfilled."""
    rest_retries: int = setting("INGEST_REST_RETRIES", 5, ge=0)
    """Retries of one REST backfill page (backoff; `Retry-After` honoured on 418/429)."""
    rest_timeout_s: float = setting("INGEST_REST_TIMEOUT_S", 10.0, gt=0)
    """Timeout of one REST request."""
    resume_from_kafka: bool = setting("INGEST_RESUME_FROM_KAFKA", True)
    """At start, read each symbol's last published trade id back from the end of `prices`: the
    trades played while no ingest ran are then a gap, revealed by the symbol's first live trade (or,
    once subscribed, by REST's latest trade when none came yet), which the backfill fetches
    (aggTrade mode; in trade mode it is counted unfilled). Needs READ on `prices`; no consumer
    group is joined. `false`: each symbol starts from its first live trade."""
    resume_window: int = setting("INGEST_RESUME_WINDOW", 10_000, ge=1)
    """Most records read back per `prices` partition at start. A symbol with no record among them
    is not resumed (logged) and starts from its first live trade."""

    @field_validator("symbols", mode="before")
    @classmethod
    def _split_symbols(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, list | tuple):
            if [str(item).strip().lower() for item in value if str(item).strip()] == [ALL_SYMBOLS]:
                return (ALL_SYMBOLS,)
            symbols = distinct_symbols(
                value,
                case=str.lower,
                invalid="invalid symbol {item!r} (letters and digits only, e.g. btcusdt)",
                skip_blank=True,
            )
            if not symbols:
                raise ValueError("at least one symbol is required, e.g. btcusdt,ethusdt")
            if ALL_SYMBOLS in symbols:
                raise ValueError("'all' stands alone: every TRADING symbol, or a list without it")
            return symbols
        return value

    @field_validator("ws_url", "rest_url")
    @classmethod
    def _url(cls, value: str, info: Any) -> str:
        schemes = ("ws://", "wss://") if info.field_name == "ws_url" else ("http://", "https://")
        value = value.strip()
        if not value.startswith(schemes):
            raise ValueError(f"must start with {' or '.join(schemes)}")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _consistent(self) -> IngestSettings:
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("INGEST_BACKOFF_MAX_S must be >= INGEST_BACKOFF_INITIAL_S")
        if self.rest_weight_per_minute < depth_weight(self.depth_snapshot_limit):
            raise ValueError(
                f"INGEST_REST_WEIGHT_PER_MINUTE ({self.rest_weight_per_minute}) is below the weight of one "
                f"snapshot of INGEST_DEPTH_SNAPSHOT_LIMIT={self.depth_snapshot_limit} levels "
                f"({depth_weight(self.depth_snapshot_limit)})"
            )
        if self.all_shard_index >= self.all_shard_count:
            raise ValueError(
                f"INGEST_ALL_SHARD_INDEX ({self.all_shard_index}) must be below INGEST_ALL_SHARD_COUNT "
                f"({self.all_shard_count})"
            )
        per_symbol = 1 + (1 + self.book_ticker if self.books else 0)
        if self.streams_per_connection < per_symbol:
            raise ValueError(
                f"INGEST_STREAMS_PER_CONNECTION ({self.streams_per_connection}) cannot hold one symbol's "
                f"{per_symbol} streams (trades, depth, bookTicker)"
            )
        return self

    @property
    def all_symbols(self) -> bool:
        """Whether INGEST_SYMBOLS is `all` (the symbols come from exchangeInfo at start)."""
        return self.symbols == (ALL_SYMBOLS,)

    @property
    def books(self) -> bool:
        """Whether order books are kept (INGEST_DEPTH is not `off`)."""
        return self.depth != "off"

    @property
    def depth_interval_ms(self) -> Literal[100, 1000]:
        """The diff-depth stream's update speed."""
        return 1000 if self.depth == "1000ms" else 100

    @property
    def stream_base_url(self) -> str:
        """``wss://host:port`` without a trailing ``/stream`` or ``/ws`` path."""
        url = self.ws_url
        for suffix in ("/stream", "/ws"):
            if url.endswith(suffix):
                return url[: -len(suffix)]
        return url


def load_settings(**overrides: Any) -> IngestSettings:
    """Read the settings (env, ``.env``) with the overrides that are not None on top.

    Raises :class:`~cryptopipe.schemas.ConfigError` naming the environment variable of each problem.
    """
    return _load_settings(IngestSettings, **overrides)
