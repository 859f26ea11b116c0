"""Faults on the prices path: replay -> ingest -> Kafka -> prices consumer -> Redis, counted by id.

Each test runs one scenario of :mod:`cryptopipe.measure.faults` (the ones ``cryptopipe bench faults``
runs, at a lower rate and a shorter stream) and asserts that every trade the exchange offered is
in Redis, none is missing and none was published or written twice. The scenario's module
docstring says how trades are reconciled by id. Times are reported, never asserted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

import pytest

from cryptopipe.infra import KafkaCluster, KafkaEndpoint, RedisEndpoint, start_redis
from cryptopipe.infra.testing import ProxiedKafka
from cryptopipe.measure.faults import (
    FaultConfig,
    Progress,
    Sample,
    ScenarioResult,
    Servers,
    broker_restart,
    cluster_endpoint,
    lag_episode,
    leader_kill,
    network_cut,
    recovery_seconds,
    redis_endpoint,
    redis_restart,
)

# Modest, for two cores: 3,600 trades in 12 s, each fault held for 5 s (the network cut: 10 s).
CONFIG = FaultConfig(rate=300, duration=12, outage=5)


def _assert_every_trade_once(result: ScenarioResult, config: FaultConfig) -> None:
    print(result.row(), result.detail)
    assert result.offered == config.count
    assert result.lost == 0, result.problems
    assert result.duplicated == 0, (result.topic_duplicates, result.redis_duplicates)
    assert result.written == result.offered
    assert result.published == result.offered
    assert result.problems == []


@pytest.fixture
def aof_redis() -> Iterator[RedisEndpoint]:
    """A Redis of this test's own, with the AOF on (fsync on every write), to be killed."""
    with start_redis(appendonly=True, appendfsync="always") as server:
        yield redis_endpoint(server)


def test_recovery_and_the_lag_episode_are_read_from_consecutive_polls() -> None:
    samples = [
        Sample(0.0, 100, 100),
        Sample(0.1, 110, None),  # Redis down: no count
        Sample(0.2, 120, None),
        Sample(0.3, 130, 100),  # back at 0.25, still behind what was offered at 0.2
        Sample(0.4, 140, 125),
        Sample(0.5, 150, 140),  # holds all 140 offered by the poll before: caught up
        Sample(0.6, 160, 160),
    ]
    assert recovery_seconds(samples, fault_end=0.25) == pytest.approx(0.25)
    # A gap in the exchange's answers is not compared across.
    assert recovery_seconds([Sample(0.0, 10, 10), Sample(0.1, None, 5), Sample(0.2, 12, 12)], 0.05) is None
    assert recovery_seconds([Sample(0.0, 10, 10), Sample(0.1, 11, 9)], fault_end=0.05) is None
    # Caught up again before the fault ended (a failover): the first poll after its end.
    assert recovery_seconds(samples, fault_end=0.55) == pytest.approx(0.05)
    assert lag_episode(samples, since=0.0) == (0.1, 0.5)
    blip = [Sample(0.0, 10, 10), Sample(0.05, 11, 9), Sample(0.08, 12, 12), *samples[1:]]
    assert lag_episode(blip, since=0.0) == (0.1, 0.5)  # the longest stretch, not the first blip
    assert lag_episode(samples[:4], since=0.0) == (0.1, None)
    assert lag_episode([Sample(0.0, 1, 1), Sample(0.1, 2, 2)], since=0.0) is None


@pytest.mark.slow
@pytest.mark.cluster
def test_the_partition_leader_killed_on_the_cluster_loses_and_duplicates_nothing(
    kafka_cluster: KafkaCluster, redis_server: RedisEndpoint
) -> None:
    servers = Servers(cluster_endpoint(kafka_cluster), redis_server, cluster=kafka_cluster)
    _assert_every_trade_once(leader_kill(servers, CONFIG, print), CONFIG)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("scenario", "config"),
    [
        pytest.param(broker_restart, CONFIG, id="broker-stopped-and-restarted-on-its-data"),
        pytest.param(network_cut, dataclasses.replace(CONFIG, outage=10), id="network-cut-for-10-s"),
    ],
)
def test_the_broker_behind_the_proxy_gone_and_back_loses_and_duplicates_nothing(
    proxied_kafka: ProxiedKafka,
    redis_server: RedisEndpoint,
    scenario: Callable[[Servers, FaultConfig, Progress], ScenarioResult],
    config: FaultConfig,
) -> None:
    servers = Servers(proxied_kafka.endpoint, redis_server, proxy=proxied_kafka.proxy)
    _assert_every_trade_once(scenario(servers, config, print), config)


@pytest.mark.slow
def test_redis_killed_and_restarted_with_the_aof_on_loses_and_duplicates_nothing(
    kafka: KafkaEndpoint, aof_redis: RedisEndpoint
) -> None:
    _assert_every_trade_once(redis_restart(Servers(kafka, aof_redis), CONFIG, print), CONFIG)
