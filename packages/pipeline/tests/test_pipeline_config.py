"""The pipeline's config: built from flags over the environment, checked once, dealt to processes."""

from __future__ import annotations

import argparse
import contextlib
from decimal import Decimal
from pathlib import Path

import pytest

from cryptopipe.alerting.settings import AlertingSettings
from cryptopipe.pipeline import Pipeline, PipelineConfig, component_of, member_names, split_symbols
from cryptopipe.pipeline.config import alerting_settings
from cryptopipe.pipeline.flags import add_pipeline_arguments, config_from_args
from cryptopipe.pipeline.names import group_assigned
from cryptopipe.pipeline.pipeline import _Ports
from cryptopipe.runtime import environ_of
from cryptopipe.schemas import ConfigError


def _config(*flags: str) -> PipelineConfig:
    parser = argparse.ArgumentParser()
    add_pipeline_arguments(parser)
    return config_from_args(parser.parse_args(list(flags)))


def test_symbols_are_dealt_round_robin_to_disjoint_shards() -> None:
    symbols = ["btcusdt", "ethusdt", "bnbusdt", "xrpusdt", "solusdt"]
    assert split_symbols(symbols, 1) == [symbols]
    assert split_symbols(symbols, 2) == [["btcusdt", "bnbusdt", "solusdt"], ["ethusdt", "xrpusdt"]]
    assert split_symbols(symbols, 5) == [[s] for s in symbols]
    for n in range(1, 6):
        shards = split_symbols(symbols, n)
        assert len(shards) == n
        assert sorted(s for shard in shards for s in shard) == sorted(symbols)  # disjoint, complete
        assert max(map(len, shards)) - min(map(len, shards)) <= 1
    with pytest.raises(ConfigError, match="--ingest-shards 3 exceeds the 2 symbol"):
        split_symbols(["btcusdt", "ethusdt"], 3)


def test_member_names_keep_the_first_process_named_after_its_component() -> None:
    assert member_names("ingest", 1) == ["ingest"]
    assert member_names("prices-consumer", 3) == ["prices-consumer", "prices-consumer-2", "prices-consumer-3"]
    assert [component_of(n) for n in member_names("prices-consumer", 3)] == ["prices-consumer"] * 3
    assert component_of("ingest-12") == "ingest"
    assert component_of("replay-exchange") == "replay-exchange"
    # The first of each keeps its row in the port table; the others get free ports.
    ports = _Ports(9200)
    assert (ports.of("ingest"), ports.of("prices-consumer")) == (9201, 9202)
    assert ports.of("ingest-2") not in (9201, 9202, 9203, 9204, 9205, 9206, 9209)


def test_a_consumer_group_is_assigned_once_every_partition_has_an_owner() -> None:
    assert group_assigned([1], 1)
    assert not group_assigned([0], 1)
    assert group_assigned([2, 2], 4)
    assert group_assigned([2, 1, 1], 4)
    assert not group_assigned([4, 0], 4)  # the second member has not joined yet
    assert not group_assigned([0, 2], 4)  # mid-rebalance: the first gave its partitions up
    assert group_assigned([1, 1, 1, 1, 0, 0], 4)  # six members, four partitions: two idle
    assert not group_assigned([1, 1, 1, 0, 0, 0], 4)
    assert group_assigned([4, 4], 8)


def test_flags_build_the_config_each_service_gets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ALERTING_CHECKPOINT_DIR", raising=False)
    config = _config(
        "--source", "replay", "--symbols", "BTCUSDT, ethusdt", "--rate", "50", "--ingest-shards", "2",
        "--consumers", "3", "--no-prometheus", "--metrics-base-port", "0", "--history-cap", "77",
    )  # fmt: skip
    assert config.replay
    assert config.symbols == ("btcusdt", "ethusdt")
    assert (config.ingest_shards, config.consumers, config.history_cap) == (2, 3, 77)
    assert config.exchange.replay is not None
    assert config.exchange.replay.rate == 50
    assert config.exchange.replay.symbols == ("BTCUSDT", "ETHUSDT")
    assert not config.observability.prometheus
    assert config.observability.dashboard
    assert config.alerting.enabled
    assert config.alerting.checkpoint_per_run
    assert config.alerting.settings is not None
    assert config.alerting.settings.master == "local[2]"
    config.check()  # nothing wrong: no exception
    # A checkpoint the user named is kept across runs.
    monkeypatch.setenv("ALERTING_CHECKPOINT_DIR", "/tmp/somewhere")
    assert not _config("--source", "replay").alerting.checkpoint_per_run
    # The config is frozen: one value for the whole run.
    with pytest.raises(ValueError, match="frozen"):
        config.consumers = 4  # type: ignore[misc]


def test_a_replay_run_gets_the_demo_rules_unless_told_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    from cryptopipe.pipeline.flags import REPLAY_DEMO_RULES

    monkeypatch.delenv("ALERTING_RULES", raising=False)

    def rules(*flags: str) -> list[str]:
        settings = _config(*flags).alerting.settings
        assert settings is not None
        return [str(rule).split(":name=")[0] for rule in settings.rules]

    assert rules("--source", "replay") == list(REPLAY_DEMO_RULES)
    assert rules("--source", "replay", "--rule", "5m:1%") == ["5m:1%"]
    assert rules("--source", "replay", "--threshold", "2%") == ["1m:2%"]
    assert rules("--binance-rest-url", "http://127.0.0.1:9") == ["1m:0.5%"]  # live: the seed's rule
    monkeypatch.setenv("ALERTING_RULES", "30s:0.3%")
    assert rules("--source", "replay") == ["30s:0.3%"]


def test_empty_symbols_are_an_error_not_the_defaults() -> None:
    with pytest.raises(ConfigError, match="--symbols: no symbol"):
        _config("--source", "replay", "--symbols", "")
    with pytest.raises(ConfigError, match="--symbols: no symbol"):
        _config("--source", "replay", "--symbols", " , ")


def test_no_alerting_reads_no_alerting_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALERTING_RULES", "1m:lots")
    with pytest.raises(ConfigError):
        _config("--source", "replay")
    assert not _config("--source", "replay", "--no-alerting").alerting.enabled


def test_the_alert_job_gets_its_rules_as_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = alerting_settings(["1m:0.5%", "5m:1%:early:name=slow"], master="local[2]")
    assert [str(rule) for rule in settings.rules] == ["1m:0.5%:name=1m-0.5pct", "5m:1%:early:name=slow"]
    # What the child reads back from its environment is what the pipeline decided.
    for name, value in environ_of(settings).items():
        monkeypatch.setenv(name, value)
    assert AlertingSettings() == settings
    threshold = alerting_settings(threshold="2%")
    assert [rule.threshold for rule in threshold.rules] == [Decimal("0.02")]


@pytest.mark.parametrize("flags", [["--rule", "1m:lots"], ["--threshold", "150%"]])
def test_a_bad_rule_is_one_config_error_naming_the_flags(flags: list[str]) -> None:
    with pytest.raises(ConfigError, match="--rule/--threshold"):
        _config("--source", "replay", *flags)
    # A typo is a typo, with the job or without it.
    with pytest.raises(ConfigError, match="--rule/--threshold"):
        _config("--source", "replay", "--no-alerting", *flags)


def test_check_finds_what_makes_the_run_impossible(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--ingest-shards 3 exceeds the 2 symbol"):
        _config("--source", "replay", "--symbols", "btcusdt,ethusdt", "--ingest-shards", "3").check()
    with pytest.raises(ConfigError, match="speed"):
        _config("--source", "replay", "--speed", "fast").check()
    # Live Binance unreachable: one line that says how to run offline.
    config = _config("--binance-rest-url", "http://127.0.0.1:9", "--no-alerting")
    with pytest.raises(ConfigError, match=r"unreachable.*cryptopipe up --source replay"):
        config.check()
    config.check(reach=False)


def test_a_pipeline_is_built_from_python_alone(tmp_path: Path) -> None:
    from cryptopipe.pipeline import AlertingConfig, ExchangeConfig

    config = PipelineConfig(
        exchange=ExchangeConfig(source="replay"), alerting=AlertingConfig(enabled=False), consumers=2
    )
    pipeline = Pipeline(config, contextlib.ExitStack(), tmp_path)
    assert not pipeline.alerting_enabled
    assert pipeline.topic_prefix == config.servers.kafka.topic_prefix
    assert pipeline.latency_samples_file("prices-consumer") is None


def test_the_dashboard_is_told_what_is_replayed(tmp_path: Path) -> None:
    from cryptopipe.pipeline.observe import _source_labels

    def labels(*flags: str) -> dict[str, str]:
        return _source_labels(Pipeline(_config(*flags), contextlib.ExitStack(), tmp_path))

    assert labels("--no-alerting") == {"source": "binance"}
    assert labels("--source", "replay", "--rate", "50", "--no-alerting") == {
        "source": "replay",
        "replay_clock": "live",
        "replay_data": "synthetic, 50 msg/s",
    }
    recorded = labels(
        "--source",
        "replay",
        "--replay-file",
        "/data/btcusdt_20240808.gz",
        "--speed",
        "5",
        "--clock",
        "original",
        "--no-alerting",
    )
    assert recorded == {
        "source": "replay",
        "replay_clock": "original",
        "replay_data": "btcusdt_20240808.gz at 5x",
    }


def test_all_symbols_go_to_every_shard_to_share_out(tmp_path: Path) -> None:
    config = _config("--source", "replay", "--symbols", "all", "--ingest-shards", "3", "--no-alerting")
    config.check(reach=False)  # not "3 shards for 1 symbol": each shard takes its share of all
    assert config.symbols == ("all",)
    assert config.exchange.replay is not None
    assert config.exchange.replay.symbols != ("ALL",)  # the exchange plays its own market
