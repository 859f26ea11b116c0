"""What the replay exchange plays: data.binance.vision CSVs, recorded frames, or a seeded generator.

Every source yields one ordered stream of :data:`SourceEvent` and never re-sorts it: a file may carry
late, out-of-order trades, and the point of replaying it is to show them to the client as they were.
Each event carries ``pace_ns``, its position on the source's own timeline (the receive-time prefix
of recorded frames, the running maximum of the trade time for CSVs, the generated arrival time for
the synthetic source), from which the tape derives the inter-arrival pacing.

Decisions worth knowing:

* Recorded ``depth``/``bookTicker`` frames are passed through verbatim (as :class:`RawFrame`) to
  subscribers of exactly that stream name; they are not trades, so they carry no history.
* A line that is valid JSON but not a stream frame (the REST depth snapshot in the recordings) is
  skipped and counted in ``skipped_lines``. A malformed line fails fast with ``path:line`` unless
  ``skip_bad_lines`` is set; then it is skipped and counted in ``bad_lines``.
* CSV/recorded timestamps above 1e14 are microseconds, otherwise milliseconds.
"""

from __future__ import annotations

import bisect
import contextlib
import gzip
import hashlib
import heapq
import io
import itertools
import logging
import math
import random
import re
import urllib.error
import urllib.request
import zipfile
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO, Literal

from cryptopipe.replay.config import BINANCE_VISION_URL, ReplayConfig
from cryptopipe.replay.errors import FetchError, ReplayConfigError, SourceError
from cryptopipe.schemas import DecodeError
from cryptopipe.schemas.binance import AggTradeEvent, StreamEvent, parse_event, split_frame

log = logging.getLogger(__name__)

CsvKind = Literal["trades", "aggTrades"]
TradeKind = Literal["trade", "aggTrade"]

#: Timestamps above this are microseconds (1e14 ms is the year 5138; 1e14 µs is 1973).
MICROS_THRESHOLD = 100_000_000_000_000

_VISION_NAME = re.compile(
    r"^(?P<symbol>[A-Z0-9]{2,30})-(?P<kind>trades|aggTrades)-\d{4}-\d{2}(?:-\d{2})?\.(?:csv|zip)$"
)
_SYMBOL_SPEC = re.compile(r"^(?P<symbol>[A-Za-z0-9]{2,30}):(?P<path>.+)$")
_STREAM_FIELD = re.compile(rb'"stream"\s*:\s*"([^"]+)"')
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True, slots=True)
class TradeRecord:
    """One trade (``kind="trade"``) or aggregate trade on the source timeline; times in µs.

    For a trade ``first_id == last_id == id``; ``event_time_us`` is Binance's ``E`` (for CSVs, which
    have no ``E``, the running maximum of the trade time, i.e. when the trade became known).
    """

    symbol: str
    kind: TradeKind
    id: int
    price: Decimal
    qty: Decimal
    first_id: int
    last_id: int
    trade_time_us: int
    event_time_us: int
    buyer_is_maker: bool
    best_match: bool
    pace_ns: int


@dataclass(frozen=True, slots=True)
class RawFrame:
    """A recorded frame of a stream we do not interpret (depth, bookTicker), sent verbatim."""

    stream: str
    data: bytes
    pace_ns: int


SourceEvent = TradeRecord | RawFrame


class Source(ABC):
    """An ordered, restartable stream of events plus what is known about it before playing."""

    name: str = "source"

    def __init__(self) -> None:
        self.skipped_lines = 0
        self.bad_lines = 0

    @abstractmethod
    def events(self) -> Iterator[SourceEvent]:
        """A fresh pass over the source (called again for ``--loop``)."""

    @property
    @abstractmethod
    def symbols(self) -> frozenset[str]:
        """Upper-case symbols this source will play (for exchangeInfo and REST validation)."""

    @property
    def agg_symbols(self) -> frozenset[str]:
        """Symbols with real aggTrades; the others get aggTrades derived 1:1 from their trades."""
        return frozenset()


# --- data.binance.vision CSV ------------------------------------------------------------------


def _to_us(value: int) -> int:
    return value if value > MICROS_THRESHOLD else value * 1000


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
        time_us = _to_us(_parse_int(fields[4], "time"))
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
        time_us = _to_us(_parse_int(fields[5], "timestamp"))
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
def _open_text(path: Path) -> Iterator[IO[str]]:
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
        with _open_text(self.path) as stream:
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
    with _open_text(path) as stream:
        for line in stream:
            if line.strip() and line.lstrip()[:1].isdigit():
                columns = line.count(",") + 1
                if columns == 7:
                    return "trades"
                if columns == 8:
                    return "aggTrades"
                raise SourceError(path, f"cannot tell trades from aggTrades: {columns} columns")
    raise SourceError(path, "no data rows")


# --- recorded frames --------------------------------------------------------------------------


def _open_binary_lines(path: Path) -> IO[bytes]:
    with path.open("rb") as probe:
        magic = probe.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rb")  # type: ignore[return-value]  # GzipFile is a binary IO
    return path.open("rb")


class RecordedFramesSource(Source):
    """``<receive time ns> <combined-stream JSON>`` per line, gzip or plain, mixed streams.

    Sample line::

        1723161254087896568 {"stream":"btcusdt@trade","data":{"e":"trade","E":1723161255343,...}}
    """

    def __init__(self, path: Path, *, skip_bad_lines: bool = False, passthrough: bool = True) -> None:
        super().__init__()
        self.path = path
        self.skip_bad_lines = skip_bad_lines
        self.passthrough = passthrough
        self.name = path.name
        self._symbols: frozenset[str] | None = None
        self._agg_symbols: frozenset[str] = frozenset()

    def _scan(self) -> None:
        symbols: set[str] = set()
        agg: set[str] = set()
        with _open_binary_lines(self.path) as stream:
            for line in stream:
                match = _STREAM_FIELD.search(line, 0, 200)
                if match is None:
                    continue
                name = match.group(1).decode("ascii", "replace")
                symbol, _, kind = name.partition("@")
                symbols.add(symbol.upper())
                if kind == "aggTrade":
                    agg.add(symbol.upper())
        self._symbols = frozenset(symbols)
        self._agg_symbols = frozenset(agg)

    @property
    def symbols(self) -> frozenset[str]:
        if self._symbols is None:
            self._scan()
        assert self._symbols is not None
        return self._symbols

    @property
    def agg_symbols(self) -> frozenset[str]:
        if self._symbols is None:
            self._scan()
        return self._agg_symbols

    def _bad(self, lineno: int, message: str) -> None:
        if not self.skip_bad_lines:
            raise SourceError(self.path, message, lineno)
        self.bad_lines += 1
        log.warning("%s:%d: skipped bad line: %s", self.path, lineno, message)

    def events(self) -> Iterator[SourceEvent]:
        with _open_binary_lines(self.path) as stream:
            for lineno, raw in enumerate(stream, 1):
                line = raw.strip()
                if not line:
                    continue
                prefix, _, body = line.partition(b" ")
                if not prefix.isdigit() or not body:
                    self._bad(lineno, "expected '<receive time ns> <JSON>'")
                    continue
                pace_ns = int(prefix)
                try:
                    frame = split_frame(body)
                except DecodeError as exc:
                    if exc.reason == "not_a_stream_frame":
                        self.skipped_lines += 1  # e.g. the REST depth snapshot line
                    else:
                        self._bad(lineno, f"malformed JSON: {exc}")
                    continue
                kind = frame.stream.partition("@")[2]
                if kind not in ("trade", "aggTrade"):
                    if self.passthrough:
                        yield RawFrame(frame.stream, frame.data, pace_ns)
                    continue
                try:
                    event = parse_event(frame.data)
                except DecodeError as exc:
                    self._bad(lineno, f"invalid {kind} event: {exc}")
                    continue
                if event is None:
                    self._bad(lineno, f"stream {frame.stream!r} does not carry a {kind} event")
                    continue
                yield _event_record(event, pace_ns)


def _event_record(event: StreamEvent, pace_ns: int) -> TradeRecord:
    """A recorded stream event on the source timeline (a trade is its own first and last id)."""
    kind: TradeKind
    if isinstance(event, AggTradeEvent):
        kind, trade_id, first_id, last_id = "aggTrade", event.a, event.f, event.l
    else:
        kind, trade_id, first_id, last_id = "trade", event.t, event.t, event.t
    return TradeRecord(
        event.s.upper(),
        kind,
        trade_id,
        event.p,
        event.q,
        first_id,
        last_id,
        _to_us(event.T),
        _to_us(event.E),
        event.m,
        event.M,
        pace_ns,
    )


# --- synthetic --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SymbolSpec:
    """Binance's tick and lot sizes for a symbol, plus where the synthetic walk starts."""

    start_price: str
    tick: str
    lot: str
    typical_qty: str


KNOWN_SYMBOLS: dict[str, SymbolSpec] = {
    "BTCUSDT": SymbolSpec("60000", "0.01", "0.00001", "0.005"),
    "ETHUSDT": SymbolSpec("3000", "0.01", "0.0001", "0.05"),
    "BNBUSDT": SymbolSpec("550", "0.01", "0.001", "0.5"),
    "SOLUSDT": SymbolSpec("150", "0.01", "0.001", "2"),
    "XRPUSDT": SymbolSpec("0.5", "0.0001", "0.1", "500"),
    "ADAUSDT": SymbolSpec("0.4", "0.0001", "0.1", "500"),
    "DOGEUSDT": SymbolSpec("0.1", "0.00001", "1", "2000"),
}
DEFAULT_SPEC = SymbolSpec("100", "0.01", "0.001", "1")
_EIGHT_PLACES = Decimal("0.00000001")
#: 2024-01-01T00:00:00Z: the synthetic tape's original clock, so ``--clock original`` is deterministic.
SYNTHETIC_EPOCH_US = 1_704_067_200_000_000


def symbol_spec(symbol: str) -> SymbolSpec:
    return KNOWN_SYMBOLS.get(symbol.upper(), DEFAULT_SPEC)


class SyntheticSource(Source):
    """Seeded trades for several symbols: Poisson arrivals with occasional bursts, tick-size walk.

    ``rate`` is the long-run mean of messages per second over all symbols; ``burst=False`` gives a
    steady Poisson stream (benchmarks). The same seed always yields the same events.
    """

    BURST_START_P = 0.01
    BURST_MEAN_LEN = 30
    BURST_FACTOR = 10.0

    def __init__(
        self, symbols: Iterable[str], *, rate: float, seed: int, burst: bool = True, count: int | None = None
    ) -> None:
        super().__init__()
        self._symbols = tuple(s.upper() for s in symbols)
        if not self._symbols:
            raise ReplayConfigError("symbols", "the synthetic source needs at least one symbol")
        self.rate = rate
        self.seed = seed
        self.burst = burst
        self.count = count
        self.name = f"synthetic(seed={seed})"

    @property
    def symbols(self) -> frozenset[str]:
        return frozenset(self._symbols)

    def _base_rate(self) -> float:
        if not self.burst:
            return self.rate
        share = self.BURST_START_P * self.BURST_MEAN_LEN / (1 + self.BURST_START_P * self.BURST_MEAN_LEN)
        return self.rate * ((1 - share) + share / self.BURST_FACTOR)

    def events(self) -> Iterator[TradeRecord]:
        rng = random.Random(self.seed)
        specs = [symbol_spec(s) for s in self._symbols]
        ticks = [Decimal(s.tick) for s in specs]
        lots = [Decimal(s.lot) for s in specs]
        price_ticks = [int(Decimal(s.start_price) / Decimal(s.tick)) for s in specs]
        log_typical = [math.log(float(Decimal(s.typical_qty) / Decimal(s.lot))) for s in specs]
        next_id = [100_000_000 * (i + 1) for i in range(len(specs))]
        weights = [1.0 / (i + 1) for i in range(len(specs))]
        cumulative = list(itertools.accumulate(w / sum(weights) for w in weights))
        base_rate = self._base_rate()
        now_us = float(SYNTHETIC_EPOCH_US)
        burst_left = 0
        produced = 0
        while self.count is None or produced < self.count:
            if self.burst and burst_left == 0 and rng.random() < self.BURST_START_P:
                burst_left = 1 + int(rng.expovariate(1.0 / self.BURST_MEAN_LEN))
            rate = base_rate * (self.BURST_FACTOR if burst_left > 0 else 1.0)
            burst_left = max(0, burst_left - 1)
            now_us += rng.expovariate(rate) * 1e6
            i = min(bisect.bisect_right(cumulative, rng.random()), len(specs) - 1)
            sigma = max(1.0, price_ticks[i] * 0.0001)
            price_ticks[i] = max(1, price_ticks[i] + round(rng.gauss(0.0, sigma)))
            lots_n = max(1, round(math.exp(rng.gauss(log_typical[i], 1.2))))
            trade_time = int(now_us)
            trade_id = next_id[i]
            next_id[i] += 1
            yield TradeRecord(
                symbol=self._symbols[i],
                kind="trade",
                id=trade_id,
                price=(price_ticks[i] * ticks[i]).quantize(_EIGHT_PLACES),
                qty=(lots_n * lots[i]).quantize(_EIGHT_PLACES),
                first_id=trade_id,
                last_id=trade_id,
                trade_time_us=trade_time,
                event_time_us=trade_time + rng.randrange(0, 1500),
                buyer_is_maker=rng.random() < 0.5,
                best_match=True,
                pace_ns=trade_time * 1000,
            )
            produced += 1


# --- several sources at once ------------------------------------------------------------------


class MergedSource(Source):
    """Several sources played together, interleaved by ``pace_ns`` (each one's own order kept)."""

    def __init__(self, sources: list[Source]) -> None:
        super().__init__()
        self.sources = sources
        self.name = "+".join(s.name for s in sources)

    @property
    def symbols(self) -> frozenset[str]:
        return frozenset().union(*(s.symbols for s in self.sources))

    @property
    def agg_symbols(self) -> frozenset[str]:
        return frozenset().union(*(s.agg_symbols for s in self.sources))

    def events(self) -> Iterator[SourceEvent]:
        if len(self.sources) == 1:
            yield from self.sources[0].events()
            return
        yield from heapq.merge(*(s.events() for s in self.sources), key=lambda e: e.pace_ns)

    def line_counts(self) -> tuple[int, int]:
        return sum(s.skipped_lines for s in self.sources), sum(s.bad_lines for s in self.sources)


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


# --- data.binance.vision download ---------------------------------------------------------------


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
                config.symbols, rate=config.rate, seed=config.seed, burst=config.burst, count=config.count
            )
        )
    return MergedSource(sources)
