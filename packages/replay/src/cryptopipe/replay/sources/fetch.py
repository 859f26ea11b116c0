"""Downloads of one day's file from data.binance.vision, checked against its published checksum."""

from __future__ import annotations

import hashlib
import logging
import re
import urllib.error
import urllib.request
from pathlib import Path

from cryptopipe.replay.config import BINANCE_VISION_URL
from cryptopipe.replay.errors import FetchError, ReplayConfigError
from cryptopipe.replay.sources.csv_file import CsvKind

log = logging.getLogger(__name__)

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_fetch_spec(spec: str) -> tuple[str, str, CsvKind]:
    """``SYMBOL:DATE[:trades|aggTrades]`` -> (symbol, date, kind); kind defaults to aggTrades."""
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not _DATE.match(parts[1]):
        raise ReplayConfigError("fetch", f"expected SYMBOL:YYYY-MM-DD[:trades|aggTrades], got {spec!r}")
    kind = parts[2] if len(parts) == 3 else "aggTrades"
    if kind not in ("trades", "aggTrades"):
        raise ReplayConfigError("fetch", f"kind must be 'trades' or 'aggTrades', got {kind!r}")
    return parts[0].upper(), parts[1], kind  # type: ignore[return-value]


def vision_url(symbol: str, date: str, kind: CsvKind, base_url: str = BINANCE_VISION_URL) -> str:
    """``https://data.binance.vision/data/spot/daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2024-03-01.zip``."""
    symbol = symbol.upper()
    return f"{base_url.rstrip('/')}/data/spot/daily/{kind}/{symbol}/{symbol}-{kind}-{date}.zip"


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "cryptopipe" / "binance-vision"


def fetch_daily_file(
    spec: str, cache_dir: Path, base_url: str = BINANCE_VISION_URL, timeout: float = 60
) -> Path:
    """Download one day's file (and check it against Binance's ``.CHECKSUM``) unless already cached."""
    symbol, date, kind = parse_fetch_spec(spec)
    url = vision_url(symbol, date, kind, base_url)
    target = cache_dir / url.rsplit("/", 1)[1]
    if target.is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(url + ".CHECKSUM", timeout=timeout) as response:
            expected = response.read().decode().split()[0].lower()
        with urllib.request.urlopen(url, timeout=timeout) as response:
            payload = response.read()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise FetchError(url, f"{reason} (no internet? download it elsewhere and use --replay-file)") from exc
    actual = hashlib.sha256(payload).hexdigest()
    if actual != expected:
        raise FetchError(url, f"sha256 {actual} does not match the published checksum {expected}")
    partial = target.with_suffix(".part")
    partial.write_bytes(payload)
    partial.replace(target)
    log.info("fetched %s into %s", url, target)
    return target
