"""Backoff, rate limits, shard planning, settings and the command line (no servers needed)."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cryptopipe.ingest import ConfigError, IngestSettings, cli, load_settings
from cryptopipe.ingest.connection import plan_shards, stream_url
from cryptopipe.ingest.pacing import AttemptWindow, TokenBucket


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@given(rate=st.floats(0.5, 4.9), times=st.lists(st.floats(0, 0.5), min_size=1, max_size=200))
def test_token_bucket_never_allows_more_than_rate_plus_one_per_second(
    rate: float, times: list[float]
) -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate, capacity=1.0, clock=clock)
    granted: list[float] = []
    for step in times:
        clock.now += step
        if bucket.try_acquire() == 0.0:
            granted.append(clock.now)
    for i, t in enumerate(granted):
        in_window = [u for u in granted[i:] if u - t < 1.0]
        assert len(in_window) <= rate + 1


def test_token_bucket_acquire_waits() -> None:
    async def burst() -> float:
        bucket = TokenBucket(20.0, capacity=1.0)
        loop = asyncio.get_running_loop()
        start = loop.time()
        for _ in range(5):
            await bucket.acquire()
        return loop.time() - start

    assert asyncio.run(burst()) >= 4 / 20.0 * 0.9


def test_attempt_window_caps_attempts_per_window() -> None:
    clock = FakeClock()
    window = AttemptWindow(3, 300.0, clock=clock)
    assert [window.try_acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert window.try_acquire() == pytest.approx(300.0)
    clock.now += 299.0
    assert window.try_acquire() == pytest.approx(1.0)
    clock.now += 1.0
    assert window.try_acquire() == 0.0


def test_plan_shards_splits_at_the_per_connection_limit() -> None:
    streams = [f"sym{i}usdt@aggTrade" for i in range(2500)]
    shards = plan_shards(streams + streams[:10], 1024)
    assert [len(s) for s in shards] == [1024, 1024, 452]
    assert [s for shard in shards for s in shard] == streams
    assert plan_shards(["a@trade"], 1024) == [("a@trade",)]
    with pytest.raises(ValueError, match="per_connection"):
        plan_shards(streams, 0)


def test_stream_url_puts_what_fits_in_the_url_and_subscribes_the_rest() -> None:
    url, rest = stream_url("ws://h:1", ["btcusdt@aggTrade", "ethusdt@aggTrade"])
    assert url == "ws://h:1/stream?streams=btcusdt@aggTrade/ethusdt@aggTrade&timeUnit=MICROSECOND"
    assert rest == []
    many = [f"sym{i:04d}usdt@aggTrade" for i in range(1024)]
    url, rest = stream_url("ws://h:1", many)
    assert len(url) < 2100
    assert rest
    assert url.count("@aggTrade") + len(rest) == 1024
    url, rest = stream_url("ws://h:1", many, max_query_chars=0)
    assert url == "ws://h:1/stream?timeUnit=MICROSECOND"
    assert rest == many


# --- settings and CLI ------------------------------------------------------------------------------


def test_settings_defaults_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = IngestSettings()
    assert settings.ws_url == "wss://stream.binance.com:9443"
    assert settings.rest_url == "https://api.binance.com"
    assert settings.symbols == ("btcusdt", "ethusdt")
    assert settings.mode == "aggTrade"
    monkeypatch.setenv("INGEST_SYMBOLS", " BTCUSDT, solusdt,,btcusdt ")
    monkeypatch.setenv("INGEST_MODE", "trade")
    monkeypatch.setenv("BINANCE_WS_URL", "ws://127.0.0.1:9/stream")
    settings = IngestSettings()
    assert settings.symbols == ("btcusdt", "solusdt")
    assert settings.mode == "trade"
    assert settings.stream_base_url == "ws://127.0.0.1:9"
    with pytest.raises(Exception, match="frozen"):
        settings.mode = "aggTrade"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("INGEST_MODE", "depth"),
        ("INGEST_SYMBOLS", "btc-usdt"),
        ("INGEST_SYMBOLS", ","),
        ("BINANCE_WS_URL", "http://example"),
        ("BINANCE_REST_URL", "ftp://example"),
        ("INGEST_METRICS_PORT", "70000"),
        ("INGEST_STREAMS_PER_CONNECTION", "2000"),
        ("INGEST_CONTROL_MESSAGES_PER_SECOND", "6"),
        ("INGEST_BUFFER_MAX_MESSAGES", "lots"),
    ],
)
def test_invalid_settings_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=variable):
        load_settings()


def test_cli_flags_override_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INGEST_SYMBOLS", "solusdt")
    monkeypatch.setenv("INGEST_METRICS_PORT", "9999")
    argv = ["--symbols", "btcusdt,ethusdt", "--mode", "trade"]
    argv += ["--ws-url", "ws://127.0.0.1:1", "--metrics-port", "0"]
    settings = cli.settings_from_args(cli.build_parser().parse_args(argv))
    assert settings.symbols == ("btcusdt", "ethusdt")
    assert settings.mode == "trade"
    assert settings.ws_url == "ws://127.0.0.1:1"
    assert settings.metrics_port == 0
    assert settings.rest_url == "https://api.binance.com"


def test_cli_requires_kafka_bootstrap(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.chdir("/")  # no .env
    assert cli.main(["--symbols", "btcusdt"]) == 2
    assert "KAFKA_BOOTSTRAP_SERVERS" in capsys.readouterr().err


def test_cli_reports_bad_settings(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("INGEST_MODE", "depth")
    assert cli.main([]) == 2
    assert "INGEST_MODE" in capsys.readouterr().err
