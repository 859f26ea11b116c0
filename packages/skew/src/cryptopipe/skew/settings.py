"""``cryptopipe skew-monitor``'s settings.

Precedence: CLI flag > environment variable > ``.env`` file > default. Every field names its
environment variable explicitly (``BINANCE_REST_URL`` is shared with ingest).
"""

from __future__ import annotations

from typing import Any

from pydantic import field_validator
from pydantic_settings import BaseSettings

from cryptopipe.schemas import SETTINGS_CONFIG, setting
from cryptopipe.schemas import load_settings as _load_settings


class SkewSettings(BaseSettings):
    """Where to ask for the time, and how often."""

    model_config = SETTINGS_CONFIG

    binance_url: str = setting("BINANCE_REST_URL", "https://api.binance.com")
    """Binance-compatible REST base whose GET /api/v3/time is the reference."""
    use_binance: bool = setting("SKEW_USE_BINANCE", True)
    """Ask Binance (false: NTP only)."""
    ntp_server: str = setting("SKEW_NTP_SERVER", "")
    """NTP server HOST[:PORT] as a second reference (empty: none)."""
    interval_s: float = setting("SKEW_INTERVAL_S", 10.0, gt=0)
    """Seconds between estimates."""
    samples: int = setting("SKEW_SAMPLES", 20, ge=1, le=100)
    """Exchanges per interval, spread over it (the first interval's, at most 8, back to back)."""
    window: int = setting("SKEW_WINDOW", 150, ge=1, le=1000)
    """Intervals the offset and drift are fitted over."""
    assumed_asymmetry_ms: float = setting("SKEW_ASSUMED_ASYMMETRY_MS", 10.0, ge=0)
    """Path asymmetry (out minus back) the interval allows for: it widens by half of it, never
    by more than half the shortest round trip. 0: a purely statistical interval."""
    fit_drift: bool = setting("SKEW_FIT_DRIFT", True)
    """Fit the frequency drift (false: a constant offset over the window)."""
    timeout_s: float = setting("SKEW_TIMEOUT_S", 2.0, gt=0)
    """Timeout of one exchange, seconds."""
    metrics_port: int = setting("SKEW_METRICS_PORT", 9105, ge=0, le=65535)
    """Port of the /metrics endpoint (0: any free port)."""
    metrics_host: str = setting("SKEW_METRICS_HOST", "127.0.0.1")
    """Address /metrics binds."""

    @field_validator("binance_url")
    @classmethod
    def _url(cls, value: str) -> str:
        value = value.strip()
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("ntp_server")
    @classmethod
    def _ntp(cls, value: str) -> str:
        value = value.strip()
        if value:
            parse_host_port(value, 123)
        return value

    def ntp_host_port(self) -> tuple[str, int] | None:
        return parse_host_port(self.ntp_server, 123) if self.ntp_server else None


def parse_host_port(value: str, default_port: int) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port``."""
    host, port = value, str(default_port)
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"expected [host]:port, got {value!r}")
            port = rest[1:]
    elif value.count(":") == 1:
        host, port = value.split(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST[:PORT] with a port in 1..65535, got {value!r}")
    return host, int(port)


def load_settings(**overrides: Any) -> SkewSettings:
    """Read env and ``.env``, apply non-None overrides.

    Raises :class:`~cryptopipe.schemas.ConfigError` naming the environment variable of each problem.
    """
    return _load_settings(SkewSettings, **overrides)
