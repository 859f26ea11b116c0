"""The replay exchange's settings: REPLAY_* variables, flags on top, read back from the environment."""

from __future__ import annotations

import math

import pytest

from cryptopipe.replay import cli
from cryptopipe.replay.config import ReplaySettings
from cryptopipe.runtime import environ_of


def test_variables_are_read_and_flags_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPLAY_SPEED", "max")
    monkeypatch.setenv("REPLAY_SYMBOLS", "btcusdt, solusdt")
    monkeypatch.setenv("REPLAY_COUNT", "50")
    monkeypatch.setenv("REPLAY_BURST", "false")
    settings = cli.settings_from_args(cli.build_parser().parse_args(["--count", "7", "--seed", "3"]))
    assert math.isinf(settings.speed)
    assert settings.symbols == ("BTCUSDT", "SOLUSDT")
    assert (settings.count, settings.seed, settings.burst) == (7, 3, False)
    config = settings.config()
    assert (config.count, config.symbols, config.paced) == (7, ("BTCUSDT", "SOLUSDT"), False)


def test_a_flag_not_given_leaves_the_default() -> None:
    settings = cli.settings_from_args(cli.build_parser().parse_args([]))
    assert settings == ReplaySettings()
    assert (settings.speed, settings.rate, settings.passthrough, settings.ready_file) == (
        1.0,
        20.0,
        True,
        None,
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("REPLAY_SPEED", "-3"),
        ("REPLAY_COUNT", "0"),
        ("REPLAY_CLOCK", "sideways"),
        ("REPLAY_PORT", "70000"),
        ("REPLAY_DEPTH_DROP_EVERY", "0"),
        ("REPLAY_REST_WEIGHT_LIMIT", "-1"),
        ("REPLAY_MARKET_SKEW", "-0.5"),
    ],
)
def test_a_bad_variable_is_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    assert cli.main([]) == 2
    err = capsys.readouterr().err
    assert f"{variable}: " in err
    assert "Traceback" not in err


def test_settings_handed_over_as_environment_read_back_equal(monkeypatch: pytest.MonkeyPatch) -> None:
    args = cli.build_parser().parse_args(
        ["--replay-file", "a.csv", "--replay-file", "ETHUSDT:b.zip", "--speed", "max", "--loop", "--no-burst"]
    )
    settings = cli.settings_from_args(args)
    for name, value in environ_of(settings).items():
        monkeypatch.setenv(name, value)
    assert ReplaySettings() == settings
    assert ReplaySettings().config() == settings.config()


def test_book_market_and_depth_fault_settings_reach_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPLAY_DEPTH_SNAPSHOT_FAIL", "2")
    monkeypatch.setenv("REPLAY_MARKET_SIZE", "1500")
    args = ["--book", "--depth-drop-every", "3", "--depth-snapshot-stale", "1", "--rest-weight-limit", "0"]
    config = cli.settings_from_args(cli.build_parser().parse_args(args)).config()
    assert (config.book, config.market_size, config.market_skew, config.rest_weight_limit) == (
        True,
        1500,
        1.0,
        0,
    )
    assert (config.depth_drop_every, config.depth_snapshot_fail, config.depth_snapshot_stale) == (3, 2, 1)
    assert (config.depth_drop_update_id, config.depth_snapshot_delay_ms) == (None, 0)
