"""Per-symbol series, bounded: the first symbols a process labels get series of their own, every
later one shares ``symbol="other"``.

Each symbol-labelled series adds lines to /metrics (a latency histogram 39 per symbol), and
prometheus_client renders the page holding the GIL: ingest's page at 1,500 symbols was 90,000
lines and took seconds to render. Sums over the label stay exact (a folded symbol's counts add
up under ``other``). Every ``.labels(symbol=...)`` of a service goes through :func:`symbol_label`;
``run_service`` sets the limit from METRICS_SYMBOL_LIMIT.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

from cryptopipe.observability.metrics.common import METRICS_SYMBOLS

logger = logging.getLogger(__name__)

#: The label value of every symbol beyond the limit.
OTHER = "other"
#: Symbols with series of their own, per process, unless METRICS_SYMBOL_LIMIT says otherwise.
DEFAULT_SYMBOL_LIMIT = 100


class SymbolLabels:
    """The ``symbol`` label value of each symbol in one process: the symbol itself for the first
    ``limit`` distinct symbols met (0: for every symbol), :data:`OTHER` for every later one.

    Thread-safe; a symbol met before costs a set lookup. The first symbol folded is logged once.
    """

    def __init__(self, limit: int = DEFAULT_SYMBOL_LIMIT) -> None:
        self._lock = threading.Lock()
        self.configure(limit)

    def configure(self, limit: int) -> None:
        """Start over with ``limit``, forgetting the symbols met so far (their series stay)."""
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        with self._lock:
            self.limit = limit
            self._labelled: set[str] = set()
            self._folded: set[str] = set()

    @property
    def labelled(self) -> int:
        """Distinct symbols with series of their own."""
        return len(self._labelled)

    @property
    def folded(self) -> int:
        """Distinct symbols labelled :data:`OTHER`."""
        return len(self._folded)

    def __call__(self, symbol: str) -> str:
        if symbol in self._labelled:
            return symbol
        if symbol in self._folded:
            return OTHER
        with self._lock:
            if symbol in self._labelled:
                return symbol
            if symbol in self._folded:
                return OTHER
            if not self.limit or len(self._labelled) < self.limit:
                self._labelled.add(symbol)
                return symbol
            if not self._folded:
                logger.info(
                    "metrics: %d symbols have series of their own; %s and every later symbol are labelled "
                    'symbol="other" (METRICS_SYMBOL_LIMIT=%d, 0 = no limit)',
                    len(self._labelled),
                    symbol,
                    self.limit,
                )
            self._folded.add(symbol)
            return OTHER

    def export(self, component: str) -> None:
        """Export the counts as ``cryptopipe_metrics_symbols{component, state}``, read when scraped."""
        METRICS_SYMBOLS.labels(component=component, state="labelled").set_function(lambda: self.labelled)
        METRICS_SYMBOLS.labels(component=component, state="folded").set_function(lambda: self.folded)


#: The process's one mapping: every service labels through it.
SYMBOL_LABELS = SymbolLabels()


def symbol_label(symbol: str) -> str:
    """``symbol``'s label value in this process: itself, or ``other`` beyond the limit."""
    return SYMBOL_LABELS(symbol)


def symbol_labels(symbols: Iterable[str]) -> list[str]:
    """The distinct label values of ``symbols``, in order (what priming per symbol should create)."""
    return list(dict.fromkeys(map(symbol_label, symbols)))
