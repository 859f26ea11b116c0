"""The service kit: stop requests, signals, backoff, rate limits, final stats and settings as env."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import threading
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Annotated

import pytest
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode

from cryptopipe.observability import metrics as m
from cryptopipe.runtime import (
    Backoff,
    RateLimitedLog,
    RunSettings,
    Stop,
    environ_of,
    final_scrape,
    read_stats,
    run_service,
    stop_on_signals,
    write_stats,
)
from cryptopipe.schemas.config import SETTINGS_CONFIG, ConfigError, env, load_settings, settings_of


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_backoff_is_capped_full_jitter_and_resets() -> None:
    highest = Backoff(0.5, 30.0, rng=lambda _low, high: high)
    ceilings = [highest.next_delay() for _ in range(10)]
    assert ceilings == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0]
    highest.reset()
    assert highest.next_delay() == 0.5
    real = Backoff(0.5, 30.0)
    delays = [real.next_delay() for _ in range(200)]
    assert all(0.0 <= d <= 30.0 for d in delays)
    assert len(set(delays)) > 100, "full jitter spreads the delays"


def test_rate_limited_log_counts_what_it_suppresses() -> None:
    clock = FakeClock()
    log = RateLimitedLog(5.0, clock=clock)
    assert log.allow("k") == 0
    assert log.allow("k") is None
    assert log.allow("k") is None
    assert log.allow("other") == 0
    clock.now += 5.0
    assert log.allow("k") == 2


def test_backoff_refuses_a_ceiling_below_its_start() -> None:
    with pytest.raises(ValueError, match="initial_s"):
        Backoff(5.0, 1.0)


def test_rate_limited_log_says_how_many_lines_it_held_back(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    log = RateLimitedLog(10.0, clock=clock)
    logger = logging.getLogger("cryptopipe.test.kit")
    with caplog.at_level(logging.WARNING, logger="cryptopipe.test.kit"):
        for _ in range(4):
            log.log(logger, logging.WARNING, "down", "broker %s down", "b1")
        clock.now += 10.0
        log.log(logger, logging.WARNING, "down", "broker %s down", "b1")
    assert [r.getMessage() for r in caplog.records] == [
        "broker b1 down",
        "broker b1 down (3 similar lines in the last 10 s held back)",
    ]


def test_stop_wakes_threads_and_asyncio_tasks_from_another_thread() -> None:
    stop = Stop()
    assert not stop.wait(0.01)

    async def waiter() -> str:
        event = stop.asyncio_event()
        threading.Timer(0.05, stop.set, args=("test",)).start()
        await asyncio.wait_for(event.wait(), timeout=30)
        return stop.reason

    assert asyncio.run(waiter()) == "test"
    assert stop.is_set()
    assert stop.wait(0)
    stop.set("again")
    assert stop.reason == "test", "the first reason stays"


def test_an_asyncio_event_taken_after_the_stop_is_already_set() -> None:
    stop = Stop()
    stop.set()

    async def taken() -> bool:
        return stop.asyncio_event().is_set()

    assert asyncio.run(taken())


def test_sigterm_sets_the_stop_and_the_old_handler_comes_back() -> None:
    before = signal.getsignal(signal.SIGTERM)
    stop = Stop()
    with stop_on_signals(stop):
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.wait(30)
    assert stop.reason == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is before


def test_stop_on_signals_off_the_main_thread_installs_nothing() -> None:
    seen: list[object] = []

    def body() -> None:
        with stop_on_signals(Stop()):
            seen.append(signal.getsignal(signal.SIGINT))

    before = signal.getsignal(signal.SIGINT)
    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert seen == [before]


def test_stats_are_written_atomically_and_read_back(tmp_path: Path) -> None:
    from dataclasses import dataclass

    @dataclass
    class Stats:
        written: int
        topic: str

    path = tmp_path / "stats.json"
    write_stats(path, Stats(3, "prices"))
    assert json.loads(path.read_text()) == {"written": 3, "topic": "prices"}
    assert read_stats(path) == {"written": 3, "topic": "prices"}
    assert [p.name for p in tmp_path.iterdir()] == ["stats.json"], "no temporary file is left"
    assert read_stats(tmp_path / "missing.json") == {}
    (tmp_path / "torn.json").write_text('{"written": ')
    assert read_stats(tmp_path / "torn.json") == {}
    with pytest.raises(TypeError, match="cannot write"):
        write_stats(path, object())


def test_run_service_runs_until_stopped_and_writes_its_stats(tmp_path: Path) -> None:
    stop = Stop()
    seen: list[str] = []

    def run(settings: str, stop: Stop) -> dict[str, int]:
        seen.append(settings)
        assert stop.wait(30)
        return {"written": 7}

    m.TRADES_RECEIVED.labels(symbol="TESTKIT").inc(3)
    threading.Timer(0.05, stop.set).start()
    stats = run_service(
        "test", run, "s", run_settings=settings_of(RunSettings, stats_json=tmp_path / "s.json"), stop=stop
    )
    assert stats == {"written": 7}
    assert seen == ["s"]
    written = read_stats(tmp_path / "s.json")
    assert written["written"] == 7
    final = final_scrape(written)
    assert final is not None, "the final metrics registry is written beside the stats"
    assert final.total(m.TRADES_RECEIVED, symbol="TESTKIT") == 3


def test_run_service_bounds_the_symbol_series_by_its_settings(
    symbol_limit: Callable[[int], m.SymbolLabels],
) -> None:
    symbol_limit(0)  # given back at teardown

    def run(_settings: None, _stop: Stop) -> list[str]:
        return [m.symbol_label(s) for s in ("KITAUSDT", "KITBUSDT", "KITCUSDT")]

    labels = run_service("test", run, None, run_settings=settings_of(RunSettings, metrics_symbol_limit=2))
    assert labels == ["KITAUSDT", "KITBUSDT", "other"]


def test_a_wrong_symbol_limit_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METRICS_SYMBOL_LIMIT", "-1")
    with pytest.raises(ConfigError, match="METRICS_SYMBOL_LIMIT"):
        load_settings(RunSettings)


def test_run_service_writes_no_stats_when_the_service_fails(tmp_path: Path) -> None:
    def run(_settings: None, _stop: Stop) -> dict[str, int]:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        run_service("test", run, None, run_settings=settings_of(RunSettings, stats_json=tmp_path / "s.json"))
    assert not (tmp_path / "s.json").exists()


class _Example(BaseSettings):
    model_config = SETTINGS_CONFIG

    name: str = Field("x", validation_alias=env("EX_NAME"))
    count: int = Field(1, validation_alias=env("EX_COUNT"))
    ratio: float = Field(0.1, validation_alias=env("EX_RATIO"))
    on: bool = Field(False, validation_alias=env("EX_ON"))
    price: Decimal = Field(Decimal("0.005"), validation_alias=env("EX_PRICE"))
    where: Path | None = Field(None, validation_alias=env("EX_PATH"))
    password: SecretStr = Field(SecretStr(""), validation_alias=env("EX_PASSWORD"))
    symbols: Annotated[tuple[str, ...], NoDecode] = Field(("a",), validation_alias=env("EX_SYMBOLS"))
    conf: dict[str, str] = Field(default_factory=dict, validation_alias=env("EX_CONF"))

    @field_validator("symbols", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return tuple(s for s in value.split(",") if s) if isinstance(value, str) else value


def test_settings_handed_over_as_environment_read_back_equal(monkeypatch: pytest.MonkeyPatch) -> None:
    original = settings_of(
        _Example,
        name="n",
        count=3,
        ratio=1e-7,
        on=True,
        price=Decimal("0.0125"),
        where=Path("/tmp/x y"),
        password=SecretStr("s3cret"),
        symbols=("btcusdt", "ethusdt"),
        conf={"spark.a": "1", "b": "two words"},
    )
    environ = environ_of(original)
    assert environ["EX_SYMBOLS"] == "btcusdt,ethusdt"
    assert environ["EX_PASSWORD"] == "s3cret"
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert _Example() == original
    assert _Example().password.get_secret_value() == "s3cret"


def test_a_none_setting_is_left_out_and_reads_back_as_none(monkeypatch: pytest.MonkeyPatch) -> None:
    original = settings_of(_Example, where=None, name="")
    environ = environ_of(original)
    assert "EX_PATH" not in environ  # "" would read back as Path("."), not None
    assert environ["EX_NAME"] == ""
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert _Example() == original
