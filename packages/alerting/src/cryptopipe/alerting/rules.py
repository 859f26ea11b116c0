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

Order-book rules (``book-updates``) watch the metrics of :mod:`cryptopipe.alerting.book_metrics`:
a *move* rule on the mid price has the same windows and modes as a price rule; a *level* rule fires
once per episode in which a metric stays beyond a bound for a hold time (``hold_us``, by event time).

Text form (CLI flag ``--rule``, env ``ALERTING_RULES`` with rules separated by ``;``)::

    1m:0.5%                      1-minute windows, alert above 0.5 %
    5m:1%:early                  5-minute windows, early alerts
    1m:0.2%:symbols=BTCUSDT,ETHUSDT:override=ETHUSDT=0.3%:name=fast
    mid:1m:0.5%:early            the mid price moves more than 0.5 % in a 1-minute window
    spread>5bps:10s              the spread stays above 5 bps for 10 s
    depth10bps<250000            the notional within 10 bps of the mid falls below 250,000 (quote)
    imbalance>0.8:2s:override=BTCUSDT=0.9
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

RuleMode = Literal["final", "early"]
#: What a rule watches: trades' ``price``, or a book metric (``mid`` moves in windows like prices;
#: ``spread`` in bps, ``depth`` notional within ``band_bps`` of the mid, ``imbalance`` are levels).
Metric = Literal["price", "mid", "spread", "depth", "imbalance"]
Op = Literal[">", "<"]
WINDOW_METRICS: tuple[Metric, ...] = ("price", "mid")
LEVEL_METRICS: tuple[Metric, ...] = ("spread", "depth", "imbalance")

_DAY_US = 86_400_000_000
_UNITS_US = {"s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000, "d": _DAY_US}
_DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_SYMBOL = re.compile(r"^[A-Z0-9]{1,32}$")
_LEVEL = re.compile(r"^\s*(spread|depth(\d+)bps|imbalance)\s*([<>])\s*(\S+)\s*$")

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
    if not window_us:
        return "0s"
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
    """One alert rule.

    For ``price`` and ``mid`` (window rules) thresholds are fractions of the open (``0.005`` =
    0.5 %). For a level rule (``spread``, ``depth``, ``imbalance``) the threshold is the bound the
    metric is compared with by ``op`` (bps, quote notional, -1..1), ``hold_us`` how long it must
    stay beyond it, ``window_us`` is 0 and ``band_bps`` is the depth's band.
    """

    model_config = ConfigDict(frozen=True)

    name: str
    window_us: int = Field(default=0, ge=0)
    threshold: Decimal = DEFAULT_THRESHOLD
    symbols: frozenset[str] | None = None
    overrides: Mapping[str, Decimal] = Field(default_factory=dict)
    mode: RuleMode = "final"
    metric: Metric = "price"
    op: Op = ">"
    band_bps: int | None = Field(default=None, gt=0, le=10_000)
    hold_us: int = Field(default=0, ge=0)

    def __str__(self) -> str:
        """The text form :func:`parse_rule` reads back to this rule (``1m:0.5%:name=1m``)."""
        if self.is_level:
            parts = [f"{self.metric_label}{self.op}{_level_text(self.metric, self.threshold)}"]
            if self.hold_us:
                parts.append(format_duration(self.hold_us))
        else:
            parts = [format_duration(self.window_us), _level_text(self.metric, self.threshold)]
            if self.metric == "mid":
                parts.insert(0, "mid")
            if self.mode == "early":
                parts.append("early")
        if self.symbols is not None:
            parts.append("symbols=" + ",".join(sorted(self.symbols)))
        parts += [f"override={s}={_level_text(self.metric, t)}" for s, t in sorted(self.overrides.items())]
        parts.append(f"name={self.name}")
        return ":".join(parts)

    @property
    def is_book(self) -> bool:
        """Whether the rule reads ``book-updates`` (every metric but ``price``)."""
        return self.metric != "price"

    @property
    def is_level(self) -> bool:
        """A level rule: a metric beyond a bound for ``hold_us`` (not a window's move)."""
        return self.metric in LEVEL_METRICS

    @property
    def metric_label(self) -> str:
        """``spread``, ``depth10bps``, ``imbalance``, ``mid`` or ``price``."""
        return f"depth{self.band_bps}bps" if self.metric == "depth" else self.metric

    def window_end_us(self, start_us: int) -> int:
        """The end of the window (or, for a level rule, of the hold) that starts at ``start_us``."""
        return start_us + (self.hold_us if self.is_level else self.window_us)

    def beyond(self, symbol: str, value: Decimal) -> bool:
        """A level rule's condition: ``value op bound`` (strict), exactly."""
        bound = self.threshold_for(symbol)
        return value > bound if self.op == ">" else value < bound

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"rule name {value!r} must be 1-64 of A-Z a-z 0-9 _ . -")
        return value

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
        for symbol in value:
            _check_symbol(symbol)
        return dict(value)

    @model_validator(mode="after")
    def _shape(self) -> Rule:
        if self.is_level:
            _check_level_rule(self)
        else:
            _check_window(self.window_us)
            if (self.band_bps, self.hold_us) != (None, 0):
                raise ValueError(f"{self.metric} rules take no depth band and no hold time")
            for threshold in (self.threshold, *self.overrides.values()):
                _check_threshold(threshold)
        return self

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
        if self.is_level:
            hold = f" for {format_duration(self.hold_us)}" if self.hold_us else ""
            text = (
                f"{self.name}: {self.metric_label} {self.op} {_level_text(self.metric, self.threshold)}{hold}"
            )
        else:
            window = format_duration(self.window_us)
            what = "mid moves" if self.metric == "mid" else "windows"
            text = f"{self.name}: {window} {what}, > {self.threshold * 100:f} %, {self.mode}"
        if self.symbols is not None:
            text += f", symbols {','.join(sorted(self.symbols))}"
        if self.overrides:
            text += ", overrides " + ",".join(
                f"{s}={_level_text(self.metric, t)}" for s, t in sorted(self.overrides.items())
            )
        return text


def _check_window(value: int) -> None:
    if not value or value % 1_000_000 or _DAY_US % value:
        raise ValueError(
            f"window {format_duration(value)} must be whole seconds and divide a day "
            "(so windows line up with exchange candles: 1m, 5m, 15m, 1h, 4h, 1d ...)"
        )


def _check_level_rule(rule: Rule) -> None:
    if rule.window_us or rule.mode != "final":
        raise ValueError(f"{rule.metric} rules have a hold time, not a window or a mode")
    if (rule.metric == "depth") != (rule.band_bps is not None):
        raise ValueError("a depth rule, and only a depth rule, has a band: depth10bps<250000")
    for bound in (rule.threshold, *rule.overrides.values()):
        if not bound.is_finite():
            raise ValueError(f"{rule.metric} bound {bound} is not a number")
        if rule.metric == "imbalance" and not -1 <= bound <= 1:
            raise ValueError(f"imbalance bound {bound} must be between -1 and 1")
        if rule.metric != "imbalance" and bound < 0:
            raise ValueError(f"{rule.metric} bound {bound} must not be negative")


def _level_text(metric: Metric, value: Decimal) -> str:
    """A threshold or bound as the text form writes it: ``0.5%``, ``5bps``, ``250000``, ``-0.8``."""
    if metric in WINDOW_METRICS:
        return f"{(value * 100).normalize():f}%"
    text = f"{value.normalize():f}"
    return text + "bps" if metric == "spread" else text


def _parse_level(metric: Metric, text: str) -> Decimal:
    raw = text.strip()
    if metric == "spread":
        if not raw.endswith("bps"):
            raise RuleError(f"spread bound {text!r} must be in basis points, like 5bps")
        raw = raw[:-3]
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise RuleError(f"bound {text!r} is not a number") from None
    return value


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
    fields: dict[str, Any]
    level = _LEVEL.match(parts[0])
    if level is not None:
        fields, rest = _level_head(level, parts[1:])
    else:
        metric: Metric = "price"
        if parts[0].lower() == "mid":
            metric, parts = "mid", parts[1:]
        if len(parts) < 2 or not parts[0] or not parts[1]:
            raise RuleError(f"rule {text!r} must start with WINDOW:THRESHOLD, like 1m:0.5%")
        fields = {
            "metric": metric,
            "window_us": parse_duration_us(parts[0]),
            "threshold": parse_threshold(parts[1]),
        }
        rest = parts[2:]
    fields.update(_options(text, rest, fields["metric"]))
    if not fields.get("name"):
        fields["name"] = _default_name(fields)
    try:
        return Rule(**fields)
    except ValueError as exc:
        raise RuleError(f"rule {text!r}: {_first_error(exc)}") from None


def _level_head(level: re.Match[str], rest: list[str]) -> tuple[dict[str, Any], list[str]]:
    """``spread>5bps`` / ``depth10bps<250000`` / ``imbalance>0.8``, then an optional hold time."""
    name = level.group(1)
    metric: Metric = "depth" if name.startswith("depth") else "spread" if name == "spread" else "imbalance"
    fields: dict[str, Any] = {
        "metric": metric,
        "op": level.group(3),
        "threshold": _parse_level(metric, level.group(4)),
        "band_bps": int(level.group(2)) if level.group(2) else None,
    }
    if rest and _DURATION.match(rest[0]):
        fields["hold_us"] = parse_duration_us(rest[0])
        rest = rest[1:]
    return fields, rest


def _options(text: str, parts: list[str], metric: Metric) -> dict[str, Any]:
    """``early``/``final``/``mode=``, ``name=``, ``symbols=``, ``override=SYM=T`` after the head."""
    found: dict[str, Any] = {}
    overrides: dict[str, Decimal] = {}
    for part in parts:
        key, _, value = part.partition("=")
        key = key.strip().lower()
        if key in ("early", "final") and not value:
            found["mode"] = key
        elif key == "mode" and value in ("early", "final"):
            found["mode"] = value
        elif key == "name" and value:
            found["name"] = value.strip()
        elif key == "symbols" and value:
            found["symbols"] = frozenset(s.strip().upper() for s in value.split(",") if s.strip())
        elif key == "override" and "=" in value:
            symbol, _, override = value.partition("=")
            bound = parse_threshold(override) if metric in WINDOW_METRICS else _parse_level(metric, override)
            overrides[symbol.strip().upper()] = bound
        else:
            raise RuleError(f"rule {text!r}: unknown part {part!r} (early, name=, symbols=, override=SYM=T)")
    if overrides:
        found["overrides"] = overrides
    return found


def _default_name(fields: Mapping[str, Any]) -> str:
    """``1m-0.5pct``, ``mid-1m-0.5pct-early``, ``spread-gt-5bps-10s``, ``depth10bps-lt-250000``."""
    metric: Metric = fields["metric"]
    if metric in LEVEL_METRICS:
        label = f"depth{fields['band_bps']}bps" if metric == "depth" else metric
        op = "gt" if fields["op"] == ">" else "lt"
        name = f"{label}-{op}-{_level_text(metric, fields['threshold'])}"
        return name + (f"-{format_duration(fields['hold_us'])}" if fields.get("hold_us") else "")
    name = f"{format_duration(fields['window_us'])}-{_threshold_label(fields['threshold'])}"
    name = f"mid-{name}" if metric == "mid" else name
    return name + ("-early" if fields.get("mode") == "early" else "")


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


def price_rules(rules: Iterable[Rule]) -> tuple[Rule, ...]:
    """The rules over trades (``prices``)."""
    return tuple(rule for rule in rules if not rule.is_book)


def book_rules(rules: Iterable[Rule]) -> tuple[Rule, ...]:
    """The rules over order books (``book-updates``)."""
    return tuple(rule for rule in rules if rule.is_book)


def parse_rules(text: str) -> tuple[Rule, ...]:
    """Rules separated by ``;`` (or new lines)."""
    items = [item for item in re.split(r"[;\n]", text) if item.strip()]
    return validate_rules(parse_rule(item) for item in items)
