"""The dashboard's settings: what to show, how often, and where the figures live.

Precedence: CLI flag > environment variable > ``.env`` file > default. Every field names its
environment variable explicitly; /work/notes/dashboard-env.md lists them for docs/configuration.md.
Redis itself is configured by :class:`cryptopipe.schemas.RedisSettings` (``REDIS_URL``,
``REDIS_KEY_PREFIX``). The CLI passes its flags to the Streamlit process as these variables,
so the page reads one source of truth.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Literal

from pydantic import field_validator
from pydantic_settings import BaseSettings, NoDecode

from cryptopipe.schemas import SETTINGS_CONFIG, setting
from cryptopipe.schemas.config import distinct_symbols


def _split(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class DashboardSettings(BaseSettings):
    """Everything the dashboard page can be told (besides Redis, see ``RedisSettings``)."""

    model_config = SETTINGS_CONFIG

    host: str = setting("DASHBOARD_HOST", "127.0.0.1")
    """Address the page binds to (loopback by default; 0.0.0.0 exposes it to the network)."""
    port: int = setting("DASHBOARD_PORT", 8501, ge=0, le=65535)
    """Port of the page."""
    symbols: Annotated[tuple[str, ...], NoDecode] = setting("DASHBOARD_SYMBOLS", ())
    """Comma list of symbols, one price card each, in this order. Empty: every symbol in Redis."""
    refresh_seconds: float = setting("DASHBOARD_REFRESH_SECONDS", 1.0, gt=0, le=3600)
    """How often each section refreshes itself, in seconds."""
    stale_seconds: float = setting("DASHBOARD_STALE_SECONDS", 10.0, gt=0)
    """A symbol with no trade received for this many seconds is marked stale."""
    history_points: int = setting("DASHBOARD_HISTORY_POINTS", 1000, ge=2, le=100_000)
    """Newest trades per symbol read from Redis on each refresh (the store keeps 1000 by default); the
    page folds them into its own history: the last price per second over the last 2 h of market time."""
    alerts_limit: int = setting("DASHBOARD_ALERTS_LIMIT", 200, ge=1, le=10_000)
    """Newest alerts read from Redis for the feed and the per-symbol counts."""
    metrics_urls: Annotated[tuple[str, ...], NoDecode] = setting("DASHBOARD_METRICS_URLS", ())
    """Comma list of the services' /metrics URLs for the health panel."""
    prometheus_url: str = setting("PROMETHEUS_URL", "")
    """Prometheus base URL (http://host:9090). When set, the health panel queries it instead of
    DASHBOARD_METRICS_URLS."""
    prometheus_window: str = setting("DASHBOARD_PROMETHEUS_WINDOW", "1m")
    """Range for rate() in Prometheus queries (latency percentiles over this window)."""
    metrics_timeout_seconds: float = setting("DASHBOARD_METRICS_TIMEOUT_SECONDS", 2.0, gt=0, le=60)
    """Timeout of one metrics scrape or Prometheus query."""
    redis_timeout_seconds: float = setting("DASHBOARD_REDIS_TIMEOUT_SECONDS", 1.0, gt=0, le=60)
    """Connect and read timeout towards Redis, so an outage shows quickly."""
    runtime_info: Annotated[dict[str, str], NoDecode] = setting(
        "CRYPTOPIPE_RUNTIME_INFO", default_factory=dict
    )
    """JSON object naming what runs, set by `cryptopipe up`: {"broker": ..., "redis": ..., "spark": ...}."""

    source: Literal["", "binance", "replay"] = setting("DASHBOARD_SOURCE", "")
    """Where the trades come from, set by `cryptopipe up`: binance or replay (empty: not said)."""
    replay_clock: Literal["", "live", "original"] = setting("DASHBOARD_REPLAY_CLOCK", "")
    """With the replay exchange: live (trade times re-stamped to now) or original (recorded times)."""
    replay_data: str = setting("DASHBOARD_REPLAY_DATA", "")
    """With the replay exchange: what it plays, e.g. `btcusdt_20240808.gz at 20x` or `synthetic, 20 msg/s`."""

    @field_validator("symbols", mode="before")
    @classmethod
    def _symbols(cls, value: object) -> object:
        value = _split(value)
        if isinstance(value, list | tuple):
            return distinct_symbols(
                value, case=str.upper, invalid="DASHBOARD_SYMBOLS: {item!r} is not a symbol like BTCUSDT"
            )
        return value

    @field_validator("metrics_urls", mode="before")
    @classmethod
    def _urls(cls, value: object) -> object:
        value = _split(value)
        if isinstance(value, list | tuple):
            for item in value:
                if not isinstance(item, str) or not item.startswith(("http://", "https://")):
                    raise ValueError(f"DASHBOARD_METRICS_URLS: {item!r} is not an http(s):// URL")
            return tuple(value)
        return value

    @field_validator("prometheus_url")
    @classmethod
    def _prometheus(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if value and not value.startswith(("http://", "https://")):
            raise ValueError(f"PROMETHEUS_URL: {value!r} is not an http(s):// URL")
        return value

    @field_validator("prometheus_window")
    @classmethod
    def _window(cls, value: str) -> str:
        if not re.fullmatch(r"[0-9]+(ms|s|m|h|d)", value.strip()):
            raise ValueError(f"DASHBOARD_PROMETHEUS_WINDOW: {value!r} is not a Prometheus duration like 1m")
        return value.strip()

    @field_validator("runtime_info", mode="before")
    @classmethod
    def _runtime(cls, value: object) -> object:
        if isinstance(value, str):
            if not value.strip():
                return {}
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(f"CRYPTOPIPE_RUNTIME_INFO is not JSON: {exc}") from exc
        if isinstance(value, dict):
            return {str(k): str(v) for k, v in value.items()}
        raise ValueError("CRYPTOPIPE_RUNTIME_INFO must be a JSON object")

    def to_env(self) -> dict[str, str]:
        """These settings as environment variables (how the CLI hands them to the Streamlit process)."""
        return {
            "DASHBOARD_HOST": self.host,
            "DASHBOARD_PORT": str(self.port),
            "DASHBOARD_SYMBOLS": ",".join(self.symbols),
            "DASHBOARD_REFRESH_SECONDS": repr(self.refresh_seconds),
            "DASHBOARD_STALE_SECONDS": repr(self.stale_seconds),
            "DASHBOARD_HISTORY_POINTS": str(self.history_points),
            "DASHBOARD_ALERTS_LIMIT": str(self.alerts_limit),
            "DASHBOARD_METRICS_URLS": ",".join(self.metrics_urls),
            "PROMETHEUS_URL": self.prometheus_url,
            "DASHBOARD_PROMETHEUS_WINDOW": self.prometheus_window,
            "DASHBOARD_METRICS_TIMEOUT_SECONDS": repr(self.metrics_timeout_seconds),
            "DASHBOARD_REDIS_TIMEOUT_SECONDS": repr(self.redis_timeout_seconds),
            "CRYPTOPIPE_RUNTIME_INFO": json.dumps(self.runtime_info) if self.runtime_info else "",
            "DASHBOARD_SOURCE": self.source,
            "DASHBOARD_REPLAY_CLOCK": self.replay_clock,
            "DASHBOARD_REPLAY_DATA": self.replay_data,
        }
