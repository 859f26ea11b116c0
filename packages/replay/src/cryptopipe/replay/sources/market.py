"""A synthetic whole market: its symbols, the few that are not TRADING, and who is busy.

Activity is skewed as on a real exchange: symbol ``k`` (by rank, from 1) gets a share proportional
to ``1 / k**skew`` (Zipf), so a few symbols carry most trades and a long tail is quiet.
"""

from __future__ import annotations

import itertools
import string
from collections.abc import Iterator, Sequence

_QUOTES = ("USDT", "USDT", "USDT", "FDUSD", "BTC")


def _made_up_names() -> Iterator[str]:
    """``AAAUSDT``, ``AABUSDT``, ... ``AAEBTC``, ...: three letters and a quote asset, never repeated."""
    for i, letters in enumerate(itertools.product(string.ascii_uppercase, repeat=3)):
        yield "".join(letters) + _QUOTES[i % len(_QUOTES)]


def market_symbols(symbols: Sequence[str], size: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(``size`` TRADING symbols, ``symbols`` first; ``max(1, size // 100)`` that are not TRADING).

    ``size`` 0 is ``symbols`` alone, with none inactive.
    """
    if size <= 0:
        return tuple(symbols), ()
    taken = set(symbols)
    names = (n for n in _made_up_names() if n not in taken)
    trading = tuple(symbols[:size]) + tuple(itertools.islice(names, max(0, size - len(symbols))))
    inactive = tuple(itertools.islice(names, max(1, size // 100)))
    return trading, inactive


def zipf_cumulative(n: int, skew: float) -> list[float]:
    """The cumulative activity shares of ``n`` symbols by rank (the last is 1.0)."""
    weights = [1.0 / (k + 1) ** skew for k in range(n)]
    total = sum(weights)
    cumulative = list(itertools.accumulate(w / total for w in weights))
    cumulative[-1] = 1.0
    return cumulative
