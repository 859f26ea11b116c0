"""The source a config describes: its ``--replay-file`` files and ``--fetch`` days, else synthetic."""

from __future__ import annotations

import re
from pathlib import Path

from cryptopipe.replay.config import ReplayConfig
from cryptopipe.replay.errors import SourceError
from cryptopipe.replay.sources.base import Source
from cryptopipe.replay.sources.csv_file import CsvKind, CsvSource, sniff_csv_kind
from cryptopipe.replay.sources.fetch import default_cache_dir, fetch_daily_file, parse_fetch_spec
from cryptopipe.replay.sources.merged import MergedSource
from cryptopipe.replay.sources.recorded import RecordedFramesSource
from cryptopipe.replay.sources.synthetic import SyntheticSource

_VISION_NAME = re.compile(
    r"^(?P<symbol>[A-Z0-9]{2,30})-(?P<kind>trades|aggTrades)-\d{4}-\d{2}(?:-\d{2})?\.(?:csv|zip)$"
)
_SYMBOL_SPEC = re.compile(r"^(?P<symbol>[A-Za-z0-9]{2,30}):(?P<path>.+)$")


def parse_file_spec(spec: str | Path) -> tuple[str | None, Path]:
    """``SYMBOL:PATH`` or ``PATH`` -> (explicit symbol or None, path)."""
    if isinstance(spec, Path):
        return None, spec
    match = _SYMBOL_SPEC.match(spec)
    if match and not Path(spec).exists():
        return match.group("symbol").upper(), Path(match.group("path"))
    return None, Path(spec)


def open_file_source(spec: str | Path, *, skip_bad_lines: bool = False, passthrough: bool = True) -> Source:
    """Open one ``--replay-file``: a data.binance.vision CSV/zip, else a recorded-frames file."""
    symbol, path = parse_file_spec(spec)
    if not path.is_file():
        raise SourceError(path, "no such file")
    name_match = _VISION_NAME.match(path.name)
    if path.suffix.lower() in (".csv", ".zip") or name_match:
        kind: CsvKind = name_match.group("kind") if name_match else sniff_csv_kind(path)  # type: ignore[assignment]
        symbol = symbol or (name_match.group("symbol") if name_match else None)
        if symbol is None:
            raise SourceError(
                path,
                "cannot tell the symbol from the file name; pass it as SYMBOL:PATH (e.g. BTCUSDT:file.csv)",
            )
        return CsvSource(path, symbol, kind, skip_bad_lines=skip_bad_lines)
    return RecordedFramesSource(path, skip_bad_lines=skip_bad_lines, passthrough=passthrough)


def build_source(config: ReplayConfig) -> MergedSource:
    """The source a config describes: its files and fetched days, else the synthetic generator."""
    sources: list[Source] = []
    for spec in config.replay_files:
        sources.append(
            open_file_source(spec, skip_bad_lines=config.skip_bad_lines, passthrough=config.passthrough)
        )
    for spec in config.fetch:
        path = fetch_daily_file(spec, config.cache_dir or default_cache_dir(), config.fetch_base_url)
        symbol, _, kind = parse_fetch_spec(spec)
        sources.append(CsvSource(path, symbol, kind, skip_bad_lines=config.skip_bad_lines))
    if not sources:
        sources.append(
            SyntheticSource(
                config.symbols,
                rate=config.rate,
                seed=config.seed,
                burst=config.burst,
                count=config.count,
                book=config.book,
                changes_per_trade=config.book_changes_per_trade,
                market_size=config.market_size,
                skew=config.market_skew,
            )
        )
    return MergedSource(sources)
