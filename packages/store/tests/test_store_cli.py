"""``cryptopipe prices-consumer`` / ``alerts-consumer``: flags, configuration errors, a real run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from confluent_kafka.admin import AdminClient

from cryptopipe.infra import KafkaEndpoint, free_port
from cryptopipe.infra.testing import eventually
from cryptopipe.schemas import KafkaSettings, RedisSettings
from cryptopipe.store import LatencyReservoir, PriceStore
from cryptopipe.store.bench import measure_redis_set_floor
from cryptopipe.store.cli import alerts_main, build_alerts_parser, main, prices_main

from .conftest import produce_trades, recorded_trades, reference_latest


def test_settings_defaults_environment_and_flags(clean_env: pytest.MonkeyPatch) -> None:
    from cryptopipe import schemas
    from cryptopipe.store.settings import AlertsConsumerSettings, PricesConsumerSettings

    prices = schemas.load_settings(PricesConsumerSettings)
    assert (prices.group, prices.metrics_port, prices.metrics_host) == (
        "cryptopipe-prices",
        9102,
        "127.0.0.1",
    )
    assert (prices.batch_size, prices.history_cap, prices.from_beginning) == (500, 1000, False)
    assert (prices.latency_samples, prices.stall_timeout_s) == (None, 5.0)
    assert main is prices_main  # `cryptopipe prices-consumer` dispatches to prices_main
    # The environment sets what no flag gives; a flag wins over the environment.
    clean_env.setenv("ALERTS_CONSUMER_GROUP", "from-env")
    clean_env.setenv("ALERTS_CONSUMER_FEED_CAP", "9")
    clean_env.setenv("ALERTS_CONSUMER_FROM_BEGINNING", "true")
    args = build_alerts_parser().parse_args(["--feed-cap", "7"])
    flags = {name: getattr(args, name, None) for name in AlertsConsumerSettings.model_fields}
    alerts = schemas.load_settings(AlertsConsumerSettings, **flags)
    assert (alerts.group, alerts.feed_cap, alerts.from_beginning, alerts.metrics_port) == (
        "from-env",
        7,
        True,
        9103,
    )
    # The prices consumer's variables are its own.
    assert schemas.load_settings(PricesConsumerSettings).group == "cryptopipe-prices"


def test_a_wrong_setting_names_its_variable(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_env.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9")
    clean_env.setenv("REDIS_URL", "redis://127.0.0.1:9/0")
    clean_env.setenv("PRICES_CONSUMER_BATCH_SIZE", "0")
    assert main(["--metrics-port", "-1"]) == 2
    assert "PRICES_CONSUMER_BATCH_SIZE" in capsys.readouterr().err
    assert alerts_main(["--metrics-port", "-1", "--feed-cap", "0"]) == 2
    assert "ALERTS_CONSUMER_FEED_CAP" in capsys.readouterr().err


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith(("KAFKA_", "REDIS_", "PRICES_CONSUMER_", "ALERTS_CONSUMER_", "CRYPTOPIPE_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no .env file here
    return monkeypatch


def test_missing_kafka_is_named(clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--metrics-port", "-1"]) == 2
    assert "KAFKA_BOOTSTRAP_SERVERS" in capsys.readouterr().err


def test_missing_redis_is_named(clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    clean_env.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9")
    assert alerts_main(["--metrics-port", "-1"]) == 2
    assert "REDIS_URL" in capsys.readouterr().err


def test_bad_redis_url_is_named(clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    clean_env.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9")
    clean_env.setenv("REDIS_URL", "http://example.invalid")
    assert main(["--metrics-port", "-1"]) == 2
    assert "REDIS_URL" in capsys.readouterr().err


def test_prices_consumer_process_end_to_end(
    kafka: KafkaEndpoint,
    kafka_settings: KafkaSettings,
    redis_settings: RedisSettings,
    redis_client: redis.Redis,
    topic_factory: Callable[..., str],
    tmp_path: Path,
) -> None:
    samples_path, stats_path = tmp_path / "latency.json", tmp_path / "stats.json"
    metrics_port = free_port()
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "KAFKA_TOPIC_PREFIX": kafka_settings.topic_prefix,
        "REDIS_URL": redis_settings.url.get_secret_value(),
        "REDIS_KEY_PREFIX": redis_settings.key_prefix,
    }
    argv = [sys.executable, "-m", "cryptopipe.store.cli", "--from-beginning", "--group", "cli-test"]
    argv += ["--metrics-port", str(metrics_port), "--latency-samples", str(samples_path)]
    argv += ["--stats-json", str(stats_path)]
    process = subprocess.Popen(argv, env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    try:
        topic = kafka_settings.topic_prefix + "prices"
        admin = AdminClient(kafka_settings.client_config())
        eventually(
            lambda: (
                {topic, kafka_settings.topic_prefix + "dead-letters"}
                <= set(admin.list_topics(timeout=5).topics)
            ),
            message="the consumer did not create its topics",
        )
        trades = recorded_trades(500)
        produce_trades(kafka_settings, topic, trades)
        store = PriceStore(redis_client, redis_settings.key_prefix)
        best = reference_latest(trades)
        eventually(
            lambda: all((store.latest(s) or {}).get("trade_id") == t.trade_id for s, t in best.items()),
            message="latest prices never reached Redis",
        )
        counted = f'cryptopipe_consumer_messages_total{{consumer="prices",topic="{topic}"}} 500.0'
        # The loop counts a batch just after Redis answered it: the count may trail the price a moment.
        eventually(
            lambda: (
                counted
                in urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5)
                .read()
                .decode()
            ),
            message="the consumer's /metrics never counted the 500 records",
        )
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert "SIGTERM received" in stderr
    samples = json.loads(samples_path.read_text())
    assert samples["unit"] == "us"
    assert len(samples["samples_us"]) == samples["seen"] == 500
    stats = json.loads(stats_path.read_text())
    assert (stats["consumed"], stats["written"], stats["dead_lettered"]) == (500, 500, 0)


def test_latency_reservoir_is_exact_below_capacity_and_bounded_above() -> None:
    exact = LatencyReservoir(capacity=10)
    exact.add([5, 1, 3])
    assert sorted(exact.samples) == [1, 3, 5]
    bounded = LatencyReservoir(capacity=10, seed=1)
    for start in range(0, 1000, 100):
        bounded.add(list(range(start, start + 100)))
    assert bounded.seen == 1000
    assert len(bounded.samples) == 10
    assert set(bounded.samples) <= set(range(1000))


def test_latency_reservoir_keeps_system_and_e2e_samples_paired_when_it_replaces() -> None:
    paired = LatencyReservoir(capacity=10, seed=2)
    for start in range(0, 1000, 100):
        values = list(range(start, start + 100))
        paired.add(values, [v + 1_000_000 for v in values])
    assert len(paired.e2e_samples) == len(paired.samples) == 10
    assert [e - s for s, e in zip(paired.samples, paired.e2e_samples, strict=True)] == [1_000_000] * 10
    with pytest.raises(ValueError, match="2 system samples but 1 e2e samples"):
        paired.add([1, 2], [1])
    unpaired = LatencyReservoir(capacity=10)
    unpaired.add([1, 2], [3, 4])
    unpaired.add([5])  # a batch without E2E: the E2E samples could no longer be paired
    assert unpaired.e2e_samples == []
    assert unpaired.samples == [1, 2, 5]


def test_latency_reservoir_keeps_the_fetch_to_written_part_paired_and_writes_it() -> None:
    """Three figures per trade survive replacement together: system, E2E and the consumer's part."""
    reservoir = LatencyReservoir(capacity=10, seed=3)
    for start in range(0, 1000, 100):
        values = list(range(start, start + 100))
        reservoir.add(values, [v + 1_000_000 for v in values], [v // 2 for v in values])
    assert len(reservoir.fetch_to_written_samples) == len(reservoir.samples) == 10
    assert [s // 2 for s in reservoir.samples] == reservoir.fetch_to_written_samples
    assert [s + 1_000_000 for s in reservoir.samples] == reservoir.e2e_samples
    with pytest.raises(ValueError, match="1 system samples but 2 fetch_to_written samples"):
        reservoir.add([1], None, [1, 2])
    assert len(reservoir.e2e_samples) == 10  # a refused call changes nothing
    # A batch without the split drops it, and only it.
    reservoir.add([7], [8])
    assert reservoir.fetch_to_written_samples == []
    assert len(reservoir.e2e_samples) == len(reservoir.samples)


def test_latency_reservoir_json_carries_every_paired_figure(tmp_path: Path) -> None:
    reservoir = LatencyReservoir()
    reservoir.add([300, 500], [900, 1200], [100, 100])
    reservoir.write_json(tmp_path / "samples.json")
    body = json.loads((tmp_path / "samples.json").read_text())
    assert body["seen"] == 2
    assert body["samples_us"] == [300, 500]
    assert body["e2e_samples_us"] == [900, 1200]
    assert body["fetch_to_written_samples_us"] == [100, 100]


def test_redis_set_floor(redis_settings: RedisSettings) -> None:
    samples = measure_redis_set_floor(redis_settings.url.get_secret_value(), 50)
    assert len(samples) == 50
    assert all(s > 0 for s in samples)
