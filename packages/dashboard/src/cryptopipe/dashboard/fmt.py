"""How the page writes prices, times, durations and changes (plain functions, no Streamlit)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

#: Binance quotes at most 8 decimals; anything finer is noise from a computation.
_PRICE_STEP = Decimal("1e-8")
UP, DOWN, FLAT = "▲", "▼", "■"


def fmt_price(price: Decimal | None) -> str:
    """``60,022.61``: thousands separators, no trailing zeros, at most 8 decimals."""
    if price is None:
        return "—"
    if price.as_tuple().exponent < -8:  # type: ignore[operator]
        price = price.quantize(_PRICE_STEP)
    return format(price.normalize(), ",f")


def fmt_time(time_us: int | None, *, date: bool = True) -> str:
    if time_us is None:
        return "—"
    moment = datetime.fromtimestamp(time_us / 1e6, tz=UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f" if date else "%H:%M:%S.%f")[:-3] + " UTC"


def fmt_ms(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.1f} ms" if value < 10_000 else f"{value / 1000:,.2f} s"


def fmt_duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:.0f} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:g} s"


def fmt_span(seconds: float) -> str:
    """``45 s``, ``12 min``, ``1 h 05 min``: a length of kept history, rounded down."""
    whole = int(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def fmt_window(start_us: int, end_us: int) -> str:
    """``12:00:00 to 12:01:00 (1 min)``: wall-clock bounds (UTC) and length of an alert window."""
    start = fmt_time(start_us, date=False)[:8]
    end = fmt_time(end_us, date=False)[:8]
    return f"{start} to {end} ({fmt_duration((end_us - start_us) / 1e6)})"


def mark(pct: float) -> str:
    """The direction mark of a change: ▲ up, ▼ down, ■ unchanged."""
    return UP if pct > 0 else DOWN if pct < 0 else FLAT


def fmt_move(pct: float, digits: int = 3) -> str:
    """``▲ +1.250%`` / ``▼ -0.300%``: a change in percent with its direction mark."""
    return f"{mark(pct)} {pct:+.{digits}f}%"
