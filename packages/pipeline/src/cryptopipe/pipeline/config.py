"""``PipelineConfig``: one typed object that says how a whole pipeline run is composed.

It holds each service's settings (the exchange, ingest's stream, the consumers, the alerting job,
the dashboard, observability and the servers) and is built from ``up``'s flags
(:mod:`cryptopipe.pipeline.flags`), or from Python; what is not given comes from each service's
settings as the environment sets them. :meth:`PipelineConfig.check` checks it once, before
anything starts, and raises one :class:`~cryptopipe.schemas.ConfigError` naming what is wrong.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from cryptopipe.alerting.rules import parse_rules, parse_threshold
from cryptopipe.alerting.settings import AlertingSettings
from cryptopipe.pipeline.names import split_symbols
from cryptopipe.pipeline.preflight import check_binance, check_kafka, check_redis, check_replay_files
from cryptopipe.replay.config import ReplaySettings
from cryptopipe.replay.errors import ReplayError
from cryptopipe.schemas import ConfigError, KafkaSettings, RedisSettings, load_settings

DEFAULT_BINANCE_WS = "wss://stream.binance.com:9443"
DEFAULT_BINANCE_REST = "https://api.binance.com"
DEFAULT_SYMBOLS = ("btcusdt", "ethusdt")

_FROZEN = ConfigDict(frozen=True, arbitrary_types_allowed=True, extra="forbid")


class ExchangeConfig(BaseModel):
    """Where trades come from: live Binance, or the replay exchange with its own settings."""

    model_config = _FROZEN

    source: Literal["binance", "replay"] = "binance"
    binance_ws_url: str = DEFAULT_BINANCE_WS
    binance_rest_url: str = DEFAULT_BINANCE_REST
    replay: ReplaySettings | None = None
    """The replay exchange's settings with ``source="replay"`` (None: from the environment); its
    port and ready file are chosen by the pipeline at start."""

    def replay_settings(self) -> ReplaySettings:
        return self.replay if self.replay is not None else load_settings(ReplaySettings)


class AlertingConfig(BaseModel):
    """The Spark alerting job (and its express lane): whether it runs, and its settings."""

    model_config = _FROZEN

    enabled: bool = True
    settings: AlertingSettings | None = None
    """The job's settings (None: from the environment)."""
    checkpoint_per_run: bool = True
    """Keep the checkpoint in the run's temp dir (the local broker keeps nothing between runs, so
    neither may the checkpoint); False when ALERTING_CHECKPOINT_DIR names one."""


class ObservabilityConfig(BaseModel):
    """The services' ``/metrics`` ports, Prometheus and the dashboard."""

    model_config = _FROZEN

    metrics_base_port: int = Field(default=9100, ge=0, le=65535)
    """Ports follow docs/metrics.md from this base; 0 = free ports for every service."""
    prometheus: bool = True
    prometheus_retention: str = Field(default="1d", pattern=r"^[0-9]+(ms|s|m|h|d|w|y)$")
    """How long Prometheus keeps samples (its TSDB on disk); its memory is the last 2-3 hours'."""
    prometheus_retention_size: str = Field(default="512MB", pattern=r"^[0-9]+(B|KB|MB|GB|TB)$")
    """The most disk its TSDB may use; the oldest blocks go first."""
    dashboard: bool = True
    dashboard_port: int = Field(default=8501, ge=0, le=65535)


class ServersConfig(BaseModel):
    """The broker and Redis (empty addresses: find or start local ones), and the run's namespaces."""

    model_config = _FROZEN

    kafka: KafkaSettings = Field(default_factory=lambda: load_settings(KafkaSettings))
    redis: RedisSettings = Field(default_factory=lambda: load_settings(RedisSettings))


class PipelineConfig(BaseModel):
    """A whole pipeline run: every service's settings, composed."""

    model_config = _FROZEN

    exchange: ExchangeConfig = Field(default_factory=ExchangeConfig)
    symbols: tuple[str, ...] = ()
    """Symbols to stream; empty: the replay exchange's, or btcusdt,ethusdt live."""
    mode: Literal["aggTrade", "trade"] = "aggTrade"
    ingest_shards: int = Field(default=1, ge=1)
    consumers: int = Field(default=1, ge=1)
    book_consumers: int = Field(default=1, ge=1)
    drain_timeout_s: float = Field(default=30.0, gt=0)
    """At the end, how long the drain waits for a group of consumers that makes no progress."""
    """Books consumers in one group, splitting the book topics' partitions (with ``depth``)."""
    depth: Literal["off", "100ms", "1000ms"] = "off"
    """Order books: ingest keeps each symbol's book in sync from `<symbol>@depth@100ms` (or the
    1,000 ms `@depth`) and a books consumer holds the top of each book in Redis; off: trades only."""
    background_nice: int = Field(default=10, ge=0, le=19)
    """CPU niceness of the batch-like processes (the Spark job, the dashboard, Prometheus), so the
    prices path comes first on a small machine; 0 leaves every process at the same priority."""
    background_sched: Literal["idle", "nice"] = "idle"
    """How they are kept back: ``idle`` runs their threads under ``SCHED_IDLE`` as well (a waking
    prices-path thread preempts them at once); ``nice`` only renices them (pipeline/priority.py)."""
    background_cpus: tuple[int, ...] = ()
    """CPUs the batch-like processes are kept to (empty: any CPU, as the kernel likes)."""
    history_cap: int | None = Field(default=None, ge=1)
    """Trades kept per symbol in Redis history (None: the prices consumer's default)."""
    latency_samples: Path | None = None
    """A directory where each prices consumer writes its latency samples (``<name>.json``)."""
    alerting: AlertingConfig = Field(default_factory=AlertingConfig)
    observability: ObservabilityConfig = Field(default_factory=ObservabilityConfig)
    servers: ServersConfig = Field(default_factory=ServersConfig)

    @property
    def replay(self) -> bool:
        return self.exchange.source == "replay"

    def check(self, *, reach: bool = True) -> None:
        """Raise :class:`ConfigError` (one line) for what makes the run impossible; with ``reach``,
        that includes a configured broker or Redis that does not answer and Binance unreachable."""
        if self.symbols != ("all",) and (self.symbols or not self.replay):
            split_symbols(list(self.symbols or DEFAULT_SYMBOLS), self.ingest_shards)
        if self.replay:
            replay = self.exchange.replay_settings()
            try:
                replay.config()
            except ReplayError as exc:
                raise ConfigError(str(exc)) from None
            check_replay_files(replay.replay_files)
        if not reach:
            return
        check_kafka(self.servers.kafka)
        check_redis(self.servers.redis)
        if not self.replay:
            rest = self.exchange.binance_rest_url
            reason = check_binance(rest)
            if reason is not None:
                raise ConfigError(
                    f"Binance is unreachable from this machine ({rest}: {reason}). "
                    "To run offline on the local replay exchange: uv run cryptopipe up --source replay"
                )


def alerting_settings(
    rules: list[str] | tuple[str, ...] = (), threshold: str | None = None, **overrides: Any
) -> AlertingSettings:
    """The Spark job's settings: environment, then ``rules``/``threshold`` (``up``'s ``--rule``
    and ``--threshold``), then ``overrides``.

    Raises :class:`ConfigError` for a rule or threshold that does not parse or a wrong ALERTING_*.
    """
    try:
        if rules:
            overrides["rules"] = parse_rules(";".join(rules))
        settings = load_settings(AlertingSettings, **overrides)
        if threshold is not None:
            settings = settings.with_threshold(parse_threshold(threshold))
    except ValueError as exc:  # RuleError or a threshold outside (0, 1); a ConfigError passes through
        raise ConfigError(f"--rule/--threshold: {exc}") from None
    return settings
