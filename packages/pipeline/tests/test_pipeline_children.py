"""The pipeline starts the replay exchange and the dashboard from their settings, not from flags."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pytest

from cryptopipe.dashboard.settings import DashboardSettings
from cryptopipe.pipeline.flags import add_pipeline_arguments, config_from_args, replay_settings
from cryptopipe.replay.config import ReplaySettings
from cryptopipe.runtime import environ_of
from cryptopipe.schemas import ConfigError, load_settings


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_pipeline_arguments(parser)
    return parser.parse_args(argv)


def test_replay_exchange_gets_ups_flags_as_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    args = _parse(
        [
            "--source",
            "replay",
            "--speed",
            "max",
            "--rate",
            "500",
            "--seed",
            "9",
            "--symbols",
            "btcusdt,solusdt",
        ]
    )
    settings = replay_settings(args)
    assert math.isinf(settings.speed)
    assert (settings.rate, settings.seed, settings.symbols) == (500.0, 9, ("BTCUSDT", "SOLUSDT"))
    for name, value in environ_of(settings).items():
        monkeypatch.setenv(name, value)
    assert ReplaySettings() == settings  # what the child reads back is what up decided


def test_replay_files_leave_the_symbols_to_the_files(tmp_path: Path) -> None:
    args = _parse(["--source", "replay", "--replay-file", "x.gz", "--symbols", "btcusdt"])
    settings = replay_settings(args)
    assert settings.replay_files == ("x.gz",)
    assert settings.symbols == ReplaySettings.model_fields["symbols"].default


def test_a_bad_replay_flag_stops_up_before_anything_starts() -> None:
    # The flag typed is named, not the variable behind it; the value is said once.
    with pytest.raises(ConfigError) as caught:
        config_from_args(_parse(["--source", "replay", "--speed", "-1", "--no-alerting"]))
    assert str(caught.value) == "--speed: must be > 0 (or 'max'), got -1.0"
    with pytest.raises(ConfigError) as caught:
        config_from_args(_parse(["--source", "replay", "--speed", "fast", "--no-alerting"]))
    assert str(caught.value).count("fast") == 1, caught.value
    with pytest.raises(ConfigError, match=r"^--rate: "):
        config_from_args(_parse(["--source", "replay", "--rate", "-5", "--no-alerting"]))


def test_dashboard_settings_round_trip_through_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(
        DashboardSettings,
        port=8600,
        symbols="btcusdt,ethusdt",
        metrics_urls="http://127.0.0.1:9101/metrics",
        runtime_info={"broker": "apache-kafka", "redis": "redis-server", "spark": "local[2]"},
    )
    environ = environ_of(settings)
    assert json.loads(environ["CRYPTOPIPE_RUNTIME_INFO"])["broker"] == "apache-kafka"
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert DashboardSettings() == settings
    assert settings.symbols == ("BTCUSDT", "ETHUSDT")
