"""Rules and settings: the text form, validation with useful messages, checkpoint identity."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from cryptopipe.alerting.rules import (
    Rule,
    RuleError,
    default_rule,
    parse_duration_us,
    parse_rule,
    parse_rules,
    validate_rules,
)
from cryptopipe.alerting.settings import AlertingSettings
from cryptopipe.schemas import format_validation_error, settings_of


def test_default_rule_is_the_seeds() -> None:
    rule = AlertingSettings().rules[0]
    assert (rule.window_us, rule.threshold) == (60_000_000, Decimal("0.005"))
    assert (rule.mode, rule.symbols) == ("final", None)
    assert AlertingSettings().watermark_delay_ms == 1000


def test_text_form_round_trip() -> None:
    rule = parse_rule("5m:1%:early:symbols=btcusdt,ETHUSDT:override=ETHUSDT=1.5%:name=slow")
    assert rule == Rule(
        name="slow",
        window_us=5 * 60_000_000,
        threshold=Decimal("0.01"),
        symbols=frozenset({"BTCUSDT", "ETHUSDT"}),
        overrides={"ETHUSDT": Decimal("0.015")},
        mode="early",
    )
    assert rule.threshold_for("ETHUSDT") == Decimal("0.015")
    assert rule.threshold_for("BTCUSDT") == Decimal("0.01")
    assert rule.applies_to("BTCUSDT")
    assert not rule.applies_to("SOLUSDT")
    assert parse_rule("1m:0.005").name == "1m-0.5pct"
    assert parse_rule("1h:2%:early").name == "1h-2pct-early"


def test_several_rules_in_one_place() -> None:
    rules = parse_rules("1m:0.5%; 5m:1%\n15m:2%:early")
    assert [r.name for r in rules] == ["1m-0.5pct", "5m-1pct", "15m-2pct-early"]
    settings = settings_of(AlertingSettings, rules="1m:0.5%;5m:1%")
    assert len(settings.rules) == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1m", "must start with WINDOW:THRESHOLD"),
        ("7m:1%", "divide a day"),
        ("90x:1%", "not a duration"),
        ("1500ms:1%", "not a duration"),
        ("1m:abc", "not a number"),
        ("1m:0%", "between 0 and 1"),
        ("1m:150%", "between 0 and 1"),
        ("1m:-1%", "between 0 and 1"),
        ("1m:1%:symbols=BTC-USDT", "upper-case letters and digits"),
        ("1m:1%:symbols=BTCUSDT:override=ETHUSDT=2%", "outside its filter"),
        ("1m:1%:sometimes", "unknown part"),
        ("1m:1%:name=has space", "rule name"),
    ],
)
def test_invalid_rules_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(RuleError, match=message):
        parse_rule(text)


def test_rule_names_must_be_unique_and_rules_present() -> None:
    with pytest.raises(RuleError, match="two rules are named"):
        parse_rules("1m:1%;1m:1%")
    with pytest.raises(RuleError, match="at least one"):
        validate_rules([])


def test_crossing_is_exact_and_strict() -> None:
    rule = default_rule(Decimal("0.005"))
    assert not rule.crosses("X", Decimal("100"), Decimal("100.5"))  # exactly 0.5 %: not above
    assert rule.crosses("X", Decimal("100"), Decimal("100.50000001"))
    assert rule.crosses("X", Decimal("100"), Decimal("99.49"))
    assert parse_duration_us("1d") == 86_400_000_000


def test_env_errors_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALERTING_RULES", "1m:7")
    with pytest.raises(ValidationError) as info:
        AlertingSettings()
    assert "ALERTING_RULES" in format_validation_error(AlertingSettings, info.value)
    monkeypatch.setenv("ALERTING_RULES", "1m:0.2%;5m:1%:early")
    monkeypatch.setenv("ALERTING_SPARK_CONF", "spark.a=1, spark.b = x=y")
    settings = AlertingSettings()
    assert [r.name for r in settings.rules] == ["1m-0.2pct", "5m-1pct-early"]
    assert settings.spark_conf == {"spark.a": "1", "spark.b": "x=y"}
    monkeypatch.setenv("ALERTING_SPARK_CONF", "novalue")
    with pytest.raises(ValidationError, match="not key=value"):
        AlertingSettings()


def test_checkpoint_follows_the_rules(tmp_path: Path) -> None:
    base = settings_of(AlertingSettings, checkpoint_dir=tmp_path)
    same = settings_of(AlertingSettings, checkpoint_dir=tmp_path, master="spark://127.0.0.1:7077")
    other = base.with_threshold(Decimal("0.01"))
    assert base.checkpoint_location("prices", "python") == same.checkpoint_location("prices", "python")
    assert base.checkpoint_location("prices", "python") != other.checkpoint_location("prices", "python")
    assert base.checkpoint_location("prices", "python") != base.checkpoint_location("prices", "native")
    assert base.checkpoint_location("prices", "python").parent == tmp_path
    assert other.rules[0].threshold == Decimal("0.01")


@pytest.mark.parametrize(
    "text", ["1m:0.5%", "5m:1%:early", "1h:2%:symbols=BTCUSDT,ETHUSDT:override=BTCUSDT=3%:name=x"]
)
def test_text_form_round_trips(text: str) -> None:
    rule = parse_rule(text)
    assert parse_rule(str(rule)) == rule


@pytest.mark.parametrize(
    "text",
    [
        "mid:1m:0.5%",
        "mid:5m:1%:early:symbols=BTCUSDT:override=BTCUSDT=2%:name=m",
        "spread>5bps:10s",
        "spread<0.5bps",
        "depth10bps<250000",
        "depth25bps>1000000:30s:symbols=BTCUSDT,ETHUSDT:override=ETHUSDT=400000",
        "imbalance>0.8:2s",
        "imbalance<-0.75:override=BTCUSDT=-0.9",
    ],
)
def test_book_rules_round_trip(text: str) -> None:
    rule = parse_rule(text)
    assert rule.is_book
    assert parse_rule(str(rule)) == rule


def test_book_rules_read_as_they_are_written() -> None:
    wide = parse_rule("spread>5bps:10s")
    assert (wide.metric, wide.op, wide.threshold, wide.hold_us, wide.window_us) == (
        "spread",
        ">",
        Decimal(5),
        10_000_000,
        0,
    )
    assert wide.name == "spread-gt-5bps-10s"
    assert wide.beyond("X", Decimal("5.01"))
    assert not wide.beyond("X", Decimal(5))
    thin = parse_rule("depth10bps<2.5:override=BTCUSDT=9")
    assert (thin.metric, thin.band_bps, thin.op, thin.hold_us) == ("depth", 10, "<", 0)
    assert thin.beyond("BTCUSDT", Decimal(8))
    assert not thin.beyond("ETHUSDT", Decimal(8))
    assert thin.window_end_us(5) == 5
    mid = parse_rule("mid:1m:0.5%:early")
    assert (mid.metric, mid.window_us, mid.mode, mid.name) == (
        "mid",
        60_000_000,
        "early",
        "mid-1m-0.5pct-early",
    )
    assert mid.crosses("X", Decimal(100), Decimal("100.51"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("spread>5:10s", "basis points"),
        ("spread>5bps:early", "hold time, not a window or a mode"),
        ("imbalance>2", "between -1 and 1"),
        ("depth10bps<-1", "must not be negative"),
        ("depth10bps<x", "not a number"),
        ("mid:7m:1%", "divide a day"),
        ("mid:1m:150%", "between 0 and 1"),
        ("spread>5bps:10s:sometimes", "unknown part"),
    ],
)
def test_invalid_book_rules_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(RuleError, match=message):
        parse_rule(text)


def test_existing_rules_keep_their_checkpoint_when_book_rules_arrive(tmp_path: Path) -> None:
    base = settings_of(AlertingSettings, checkpoint_dir=tmp_path, rules="1m:0.5%")
    more = settings_of(AlertingSettings, checkpoint_dir=tmp_path, rules="1m:0.5%;spread>5bps:10s")
    assert base.checkpoint_location("prices", "native") == more.checkpoint_location("prices", "native")
    book = more.checkpoint_location("book-updates", "native", book=True)
    assert book != more.checkpoint_location("book-updates", "native")
