"""Alert rules: what counts as a price move worth an alert, configured in one place.

A rule is a window length, a threshold, an optional symbol filter with per-symbol threshold
overrides, and a mode:

- ``final``: one alert per (rule, symbol, window) when the watermark closes a window whose
  ``|close - open| / open`` exceeds the threshold (the seed's behaviour);
- ``early``: an alert as soon as the running change inside a still-open window crosses the
  threshold, at most once per window; a window that fired early raises no alert when it
  closes, and one that never fired early raises a final alert only if it crosses at the close
  (a price can move back and forth, and the early check then saw it first).

Windows are tumbling, aligned on the Unix epoch (so on UTC candles) and half-open
``[start, start + window)`` on trade time. Open is the price of the first trade by
(trade time, trade id), close the price of the last: equal timestamps never make the result
depend on arrival order. ``side`` is ``SELL`` when the price rose and ``BUY`` when it fell (the
seed's convention: sell into a rally, buy the dip).

Text form (CLI flag ``--rule``, env ``ALERTING_RULES`` with rules separated by ``;``)::

    1m:0.5%                      1-minute windows, alert above 0.5 %
    5m:1%:early                  5-minute windows, early alerts
    1m:0.2%:symbols=BTCUSDT,ETHUSDT:override=ETHUSDT=0.3%:name=fast
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

RuleMode = Literal["final", "early"]

_DAY_US = 86_400_000_000
_UNITS_US = {"s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000, "d": _DAY_US}
_DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_SYMBOL = re.compile(r"^[A-Z0-9]{1,32}$")

#: The seed's rule: 1-minute windows, 0.5 %.
DEFAULT_THRESHOLD = Decimal("0.005")


class RuleError(ValueError):
    """A rule or rule set is invalid; the message names the offending part."""


def parse_duration_us(text: str) -> int:
    """``"90s"``, ``"1m"``, ``"4h"``, ``"1d"`` -> microseconds."""
    match = _DURATION.match(text)
    if match is None:
        raise RuleError(f"window {text!r} is not a duration like 30s, 1m, 5m, 1h or 1d")
    return int(match.group(1)) * _UNITS_US[match.group(2)]


def format_duration(window_us: int) -> str:
    for unit in ("d", "h", "m", "s"):
        size = _UNITS_US[unit]
        if window_us % size == 0:
            return f"{window_us // size}{unit}"
    return f"{window_us}us"


def parse_threshold(text: str) -> Decimal:
    """``"0.5%"`` or ``"0.005"`` -> ``Decimal("0.005")`` (a fraction of the open price)."""
    raw = text.strip()
    try:
        value = Decimal(raw[:-1]) / 100 if raw.endswith("%") else Decimal(raw)
    except InvalidOperation:
        raise RuleError(f"threshold {text!r} is not a number or a percentage") from None
    return value


class Rule(BaseModel):
    """One alert rule. Thresholds are fractions of the open price (``0.005`` = 0.5 %)."""

    model_config = ConfigDict(frozen=True)

    name: str
    window_us: int = Field(gt=0)
    threshold: Decimal = DEFAULT_THRESHOLD
    symbols: frozenset[str] | None = None
    overrides: Mapping[str, Decimal] = Field(default_factory=dict)
    mode: RuleMode = "final"

    def __str__(self) -> str:
        """The text form :func:`parse_rule` reads back to this rule (``1m:0.5%:name=1m``)."""
        parts = [format_duration(self.window_us), f"{(self.threshold * 100).normalize():f}%"]
        if self.mode == "early":
            parts.append("early")
        if self.symbols is not None:
            parts.append("symbols=" + ",".join(sorted(self.symbols)))
        parts += [f"override={s}={(t * 100).normalize():f}%" for s, t in sorted(self.overrides.items())]
        parts.append(f"name={self.name}")
        return ":".join(parts)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"rule name {value!r} must be 1-64 of A-Z a-z 0-9 _ . -")
        return value

    @field_validator("window_us")
    @classmethod
    def _window(cls, value: int) -> int:
        if value % 1_000_000 or _DAY_US % value:
            raise ValueError(
                f"window {format_duration(value)} must be whole seconds and divide a day "
                "(so windows line up with exchange candles: 1m, 5m, 15m, 1h, 4h, 1d ...)"
            )
        return value

    @field_validator("threshold")
    @classmethod
    def _threshold(cls, value: Decimal) -> Decimal:
        return _check_threshold(value)

    @field_validator("symbols")
    @classmethod
    def _symbols(cls, value: frozenset[str] | None) -> frozenset[str] | None:
        if value is not None:
            if not value:
                raise ValueError("a symbol filter must name at least one symbol")
            for symbol in value:
                _check_symbol(symbol)
        return value

    @field_validator("overrides")
    @classmethod
    def _overrides(cls, value: Mapping[str, Decimal]) -> Mapping[str, Decimal]:
        for symbol, threshold in value.items():
            _check_symbol(symbol)
            _check_threshold(threshold)
        return dict(value)

    @model_validator(mode="after")
    def _overrides_within_filter(self) -> Rule:
        if self.symbols is not None:
            outside = sorted(set(self.overrides) - self.symbols)
            if outside:
                raise ValueError(f"rule {self.name}: overrides for symbols outside its filter: {outside}")
        return self

    def applies_to(self, symbol: str) -> bool:
        return self.symbols is None or symbol in self.symbols

    def threshold_for(self, symbol: str) -> Decimal:
        return self.overrides.get(symbol, self.threshold)

    def crosses(self, symbol: str, open_price: Decimal, close_price: Decimal) -> bool:
        """``|close - open| / open > threshold``, exactly (no float rounding)."""
        if open_price <= 0:
            return False
        return abs(close_price - open_price) > self.threshold_for(symbol) * open_price

    def window_start_us(self, trade_time_us: int) -> int:
        return trade_time_us - trade_time_us % self.window_us

    def describe(self) -> str:
        window = format_duration(self.window_us)
        text = f"{self.name}: {window} windows, > {self.threshold * 100:f} %, {self.mode}"
        if self.symbols is not None:
            text += f", symbols {','.join(sorted(self.symbols))}"
        if self.overrides:
            text += ", overrides " + ",".join(f"{s}={t * 100:f}%" for s, t in sorted(self.overrides.items()))
        return text


def _check_threshold(value: Decimal) -> Decimal:
    if not value.is_finite() or value <= 0 or value >= 1:
        raise ValueError(f"threshold {value} must be a fraction between 0 and 1 (0.005 = 0.5 %)")
    return value


def _check_symbol(symbol: str) -> None:
    if not _SYMBOL.match(symbol):
        raise ValueError(f"symbol {symbol!r} must be upper-case letters and digits, like BTCUSDT")


def parse_rule(text: str) -> Rule:
    """Parse the text form (see the module docstring)."""
    parts = [part.strip() for part in text.strip().split(":")]
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise RuleError(f"rule {text!r} must start with WINDOW:THRESHOLD, like 1m:0.5%")
    window_us = parse_duration_us(parts[0])
    threshold = parse_threshold(parts[1])
    name = ""
    mode: RuleMode = "final"
    symbols: frozenset[str] | None = None
    overrides: dict[str, Decimal] = {}
    for part in parts[2:]:
        key, _, value = part.partition("=")
        key = key.strip().lower()
        if key in ("early", "final") and not value:
            mode = "early" if key == "early" else "final"
        elif key == "mode" and value in ("early", "final"):
            mode = "early" if value == "early" else "final"
        elif key == "name" and value:
            name = value.strip()
        elif key == "symbols" and value:
            symbols = frozenset(s.strip().upper() for s in value.split(",") if s.strip())
        elif key == "override" and "=" in value:
            symbol, _, override = value.partition("=")
            overrides[symbol.strip().upper()] = parse_threshold(override)
        else:
            raise RuleError(f"rule {text!r}: unknown part {part!r} (early, name=, symbols=, override=SYM=T)")
    if not name:
        name = f"{format_duration(window_us)}-{_threshold_label(threshold)}" + (
            "-early" if mode == "early" else ""
        )
    try:
        return Rule(
            name=name,
            window_us=window_us,
            threshold=threshold,
            symbols=symbols,
            overrides=overrides,
            mode=mode,
        )
    except ValueError as exc:
        raise RuleError(f"rule {text!r}: {_first_error(exc)}") from None


def _threshold_label(threshold: Decimal) -> str:
    return f"{(threshold * 100).normalize():f}pct"


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        details = errors()
        if details:
            return str(details[0].get("msg", exc)).removeprefix("Value error, ")
    return str(exc)


def default_rule(threshold: Decimal = DEFAULT_THRESHOLD) -> Rule:
    """The seed's rule: 1-minute windows, alert above ``threshold`` (0.5 %)."""
    return Rule(name="1m", window_us=60_000_000, threshold=_check_threshold(threshold))


def validate_rules(rules: Iterable[Rule]) -> tuple[Rule, ...]:
    """A non-empty set of rules with unique names."""
    result = tuple(rules)
    if not result:
        raise RuleError("at least one alert rule is needed")
    seen: set[str] = set()
    for rule in result:
        if rule.name in seen:
            raise RuleError(f"two rules are named {rule.name!r}; give one of them name=...")
        seen.add(rule.name)
    return result


def parse_rules(text: str) -> tuple[Rule, ...]:
    """Rules separated by ``;`` (or new lines)."""
    items = [item for item in re.split(r"[;\n]", text) if item.strip()]
    return validate_rules(parse_rule(item) for item in items)
