"""What the exchange knows about a symbol: its base and quote assets, its tick and lot sizes.

exchangeInfo serves these, and the synthetic source walks prices on the tick and sizes on the lot.
"""

from __future__ import annotations

from dataclasses import dataclass

_QUOTES = ("USDT", "USDC", "FDUSD", "BUSD", "TUSD", "DAI", "BTC", "ETH", "BNB", "EUR", "TRY", "BRL", "JPY")


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


def symbol_spec(symbol: str) -> SymbolSpec:
    """``symbol``'s spec (any case); a symbol we do not know gets :data:`DEFAULT_SPEC`."""
    return KNOWN_SYMBOLS.get(symbol.upper(), DEFAULT_SPEC)


def split_symbol(symbol: str) -> tuple[str, str]:
    """``BTCUSDT`` -> (``BTC``, ``USDT``) by the longest known quote asset."""
    for quote in sorted(_QUOTES, key=len, reverse=True):
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[: -len(quote)], quote
    return symbol[:-4] or symbol, symbol[-4:]
