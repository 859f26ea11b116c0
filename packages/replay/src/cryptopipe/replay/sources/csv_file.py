"""data.binance.vision ``trades`` / ``aggTrades`` files, daily or monthly, plain CSV or zipped.

Rows are parsed strictly: a malformed row fails with ``path:line`` unless ``skip_bad_lines`` is set,
then it is skipped and counted in ``bad_lines``; a header is tolerated on the first line only.
"""

from __future__ import annotations

import contextlib
import io
import logging
import zipfile
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO, Literal

from cryptopipe.replay.errors import SourceError
from cryptopipe.replay.sources.base import Source, TradeKind, TradeRecord, to_us

log = logging.getLogger(__name__)

CsvKind = Literal["trades", "aggTrades"]


def _parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low == "true":
        return True
    if low == "false":
        return False
    raise ValueError(f"expected True/False, got {text!r}")


def _parse_int(text: str, what: str) -> int:
    text = text.strip()
    if not text.isdigit():
        raise ValueError(f"{what} must be a non-negative integer, got {text!r}")
    return int(text)


def _parse_decimal(text: str, what: str, *, positive: bool) -> Decimal:
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise ValueError(f"{what} is not a number: {text!r}") from None
    if not value.is_finite() or value < 0 or (positive and value == 0):
        raise ValueError(f"{what} must be {'> 0' if positive else '>= 0'}, got {text!r}")
    return value


def parse_csv_row(line: str, kind: CsvKind, symbol: str, running_max_us: int = 0) -> TradeRecord:
    """Parse one data.binance.vision row; raises ``ValueError`` saying what is wrong with it.

    trades: ``id,price,qty,quoteQty,time,isBuyerMaker,isBestMatch``;
    aggTrades: ``aggId,price,qty,firstTradeId,lastTradeId,timestamp,isBuyerMaker,isBestMatch``.
    """
    fields = line.rstrip("\r\n").split(",")
    if kind == "trades":
        if len(fields) != 7:
            raise ValueError(f"expected 7 comma-separated fields for a trades row, got {len(fields)}")
        trade_id = _parse_int(fields[0], "id")
        first = last = trade_id
        price = _parse_decimal(fields[1], "price", positive=True)
        qty = _parse_decimal(fields[2], "qty", positive=False)
        _parse_decimal(fields[3], "quoteQty", positive=False)
        time_us = to_us(_parse_int(fields[4], "time"))
        maker, best = _parse_bool(fields[5]), _parse_bool(fields[6])
        record_kind: TradeKind = "trade"
    else:
        if len(fields) != 8:
            raise ValueError(f"expected 8 comma-separated fields for an aggTrades row, got {len(fields)}")
        trade_id = _parse_int(fields[0], "aggId")
        price = _parse_decimal(fields[1], "price", positive=True)
        qty = _parse_decimal(fields[2], "qty", positive=False)
        first = _parse_int(fields[3], "firstTradeId")
        last = _parse_int(fields[4], "lastTradeId")
        if last < first:
            raise ValueError(f"lastTradeId {last} < firstTradeId {first}")
        time_us = to_us(_parse_int(fields[5], "timestamp"))
        maker, best = _parse_bool(fields[6]), _parse_bool(fields[7])
        record_kind = "aggTrade"
    known_us = max(running_max_us, time_us)
    return TradeRecord(
        symbol=symbol,
        kind=record_kind,
        id=trade_id,
        price=price,
        qty=qty,
        first_id=first,
        last_id=last,
        trade_time_us=time_us,
        event_time_us=known_us,
        buyer_is_maker=maker,
        best_match=best,
        pace_ns=known_us * 1000,
    )


def csv_row(record: TradeRecord, *, micros: bool = False) -> str:
    """The data.binance.vision row for ``record`` (inverse of :func:`parse_csv_row`)."""
    t = record.trade_time_us if micros else record.trade_time_us // 1000
    maker = "True" if record.buyer_is_maker else "False"
    best = "True" if record.best_match else "False"
    if record.kind == "trade":
        quote = record.price * record.qty
        return f"{record.id},{record.price},{record.qty},{quote},{t},{maker},{best}"
    return f"{record.id},{record.price},{record.qty},{record.first_id},{record.last_id},{t},{maker},{best}"


@contextlib.contextmanager
def open_text(path: Path) -> Iterator[IO[str]]:
    """Open a plain or zipped CSV as text (a data.binance.vision zip holds exactly one CSV)."""
    if not zipfile.is_zipfile(path):
        with path.open(encoding="utf-8", newline="") as stream:
            yield stream
        return
    with zipfile.ZipFile(path) as archive:
        members = [m for m in archive.namelist() if m.lower().endswith(".csv")]
        if not members:
            raise SourceError(path, "zip archive holds no .csv member")
        with io.TextIOWrapper(archive.open(members[0]), encoding="utf-8", newline="") as stream:
            yield stream


class CsvSource(Source):
    """A data.binance.vision daily or monthly ``trades`` / ``aggTrades`` file, plain or zipped."""

    def __init__(self, path: Path, symbol: str, kind: CsvKind, *, skip_bad_lines: bool = False) -> None:
        super().__init__()
        self.path = path
        self.symbol = symbol.upper()
        self.kind: CsvKind = kind
        self.skip_bad_lines = skip_bad_lines
        self.name = f"{self.symbol}:{path.name}"

    @property
    def symbols(self) -> frozenset[str]:
        return frozenset({self.symbol})

    @property
    def agg_symbols(self) -> frozenset[str]:
        return frozenset({self.symbol}) if self.kind == "aggTrades" else frozenset()

    def events(self) -> Iterator[TradeRecord]:
        running_max = 0
        with open_text(self.path) as stream:
            for lineno, line in enumerate(stream, 1):
                if not line.strip():
                    continue
                if lineno == 1 and not line.lstrip()[:1].isdigit():
                    self.skipped_lines += 1  # a header row, tolerated on the first line only
                    continue
                try:
                    record = parse_csv_row(line, self.kind, self.symbol, running_max)
                except ValueError as exc:
                    if not self.skip_bad_lines:
                        raise SourceError(self.path, str(exc), lineno) from None
                    self.bad_lines += 1
                    log.warning("%s:%d: skipped bad line: %s", self.path, lineno, exc)
                    continue
                running_max = record.event_time_us
                yield record


def sniff_csv_kind(path: Path) -> CsvKind:
    """Tell trades from aggTrades by the column count of the first data row."""
    with open_text(path) as stream:
        for line in stream:
            if line.strip() and line.lstrip()[:1].isdigit():
                columns = line.count(",") + 1
                if columns == 7:
                    return "trades"
                if columns == 8:
                    return "aggTrades"
                raise SourceError(path, f"cannot tell trades from aggTrades: {columns} columns")
    raise SourceError(path, "no data rows")
