"""What the replay exchange plays: data.binance.vision CSVs, recorded frames, or a seeded generator.

Every source yields one ordered stream of :data:`SourceEvent` and never re-sorts it: a file may carry
late, out-of-order trades, and the point of replaying it is to show them to the client as they were.
One module per source (:mod:`.csv_file`, :mod:`.recorded`, :mod:`.synthetic`, :mod:`.merged`) on
:mod:`.base`; :mod:`.fetch` downloads days and :mod:`.build` turns a config into a source.
CSV and recorded timestamps above 1e14 are microseconds, otherwise milliseconds.
"""

from cryptopipe.replay.sources.base import (
    MICROS_THRESHOLD,
    RawFrame,
    Source,
    SourceEvent,
    TradeKind,
    TradeRecord,
)
from cryptopipe.replay.sources.build import build_source, open_file_source, parse_file_spec
from cryptopipe.replay.sources.csv_file import CsvKind, CsvSource, csv_row, parse_csv_row, sniff_csv_kind
from cryptopipe.replay.sources.fetch import default_cache_dir, fetch_daily_file, parse_fetch_spec, vision_url
from cryptopipe.replay.sources.merged import MergedSource
from cryptopipe.replay.sources.recorded import RecordedFramesSource
from cryptopipe.replay.sources.synthetic import SYNTHETIC_EPOCH_US, SyntheticSource
from cryptopipe.replay.symbols import DEFAULT_SPEC, KNOWN_SYMBOLS, SymbolSpec, symbol_spec

__all__ = [
    "DEFAULT_SPEC",
    "KNOWN_SYMBOLS",
    "MICROS_THRESHOLD",
    "SYNTHETIC_EPOCH_US",
    "CsvKind",
    "CsvSource",
    "MergedSource",
    "RawFrame",
    "RecordedFramesSource",
    "Source",
    "SourceEvent",
    "SymbolSpec",
    "SyntheticSource",
    "TradeKind",
    "TradeRecord",
    "build_source",
    "csv_row",
    "default_cache_dir",
    "fetch_daily_file",
    "open_file_source",
    "parse_csv_row",
    "parse_fetch_spec",
    "parse_file_spec",
    "sniff_csv_kind",
    "symbol_spec",
    "vision_url",
]
