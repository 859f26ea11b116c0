"""What every source yields: trades and verbatim frames on the source's own timeline.

A :class:`Source` is an ordered, restartable stream of :data:`SourceEvent` that it never re-sorts;
each event's ``pace_ns`` places it on the source's timeline, from which the tape derives pacing.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

TradeKind = Literal["trade", "aggTrade"]

#: Timestamps above this are microseconds (1e14 ms is the year 5138; 1e14 µs is 1973).
MICROS_THRESHOLD = 100_000_000_000_000


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


#: One price level as Binance writes it: (price, quantity) decimal strings; quantity "0..." removes it.
TextLevel = tuple[str, str]


@dataclass(frozen=True, slots=True)
class DepthSnapshotRecord:
    """A REST depth snapshot found in a recording (``{"lastUpdateId", "bids", "asks"}``)."""

    symbol: str
    last_update_id: int
    bids: tuple[TextLevel, ...]
    asks: tuple[TextLevel, ...]
    pace_ns: int


@dataclass(frozen=True, slots=True)
class DepthRecord:
    """A synthetic ``depthUpdate``: the levels updates ``first_id..final_id`` changed, batched over
    ``interval_ms`` (100 for ``@depth@100ms``, 1000 for ``@depth``) and sent at ``event_time_us``."""

    symbol: str
    first_id: int
    final_id: int
    bids: tuple[TextLevel, ...]
    asks: tuple[TextLevel, ...]
    interval_ms: int
    event_time_us: int
    pace_ns: int


SourceEvent = TradeRecord | RawFrame | DepthSnapshotRecord | DepthRecord


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

    @property
    def inactive_symbols(self) -> frozenset[str]:
        """Symbols listed in exchangeInfo but not TRADING (nothing is played for them)."""
        return frozenset()


def to_us(value: int) -> int:
    """A recorded timestamp in µs: values above :data:`MICROS_THRESHOLD` are µs already, others ms."""
    return value if value > MICROS_THRESHOLD else value * 1000
