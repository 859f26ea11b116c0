"""``up`` starts the replay exchange and the dashboard from their settings, not from flags."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from cryptopipe.cli import up
from cryptopipe.dashboard.settings import DashboardSettings
from cryptopipe.replay.config import ReplaySettings
from cryptopipe.runtime import environ_of


def test_replay_exchange_gets_ups_flags_as_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    args = up.build_parser().parse_args(
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
    settings = up.replay_settings(args, tmp_path / "ready.json")
    assert (settings.port, settings.ready_file) == (0, tmp_path / "ready.json")
    assert math.isinf(settings.speed)
    assert (settings.rate, settings.seed, settings.symbols) == (500.0, 9, ("BTCUSDT", "SOLUSDT"))
    for name, value in environ_of(settings).items():
        monkeypatch.setenv(name, value)
    assert ReplaySettings() == settings  # what the child reads back is what up decided


def test_replay_files_leave_the_symbols_to_the_files(tmp_path: Path) -> None:
    args = up.build_parser().parse_args(
        ["--source", "replay", "--replay-file", "x.gz", "--symbols", "btcusdt"]
    )
    settings = up.replay_settings(args, tmp_path / "ready.json")
    assert settings.replay_files == ("x.gz",)
    assert settings.symbols == ReplaySettings.model_fields["symbols"].default


def test_a_bad_replay_flag_stops_up_before_anything_starts() -> None:
    problem = up._preflight(
        up.build_parser().parse_args(["--source", "replay", "--speed", "-1", "--no-alerting"])
    )
    assert problem is not None
    assert "REPLAY_SPEED" in problem


def test_dashboard_settings_round_trip_through_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = up.load_settings(
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
