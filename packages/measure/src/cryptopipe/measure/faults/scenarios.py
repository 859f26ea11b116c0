"""The five scenarios ``bench faults`` runs: the pipeline, one fault mid-stream, reconciled by id."""

from __future__ import annotations

from collections.abc import Callable

from cryptopipe.infra import (
    RedisServer,
)
from cryptopipe.measure.faults.config import FaultConfig, Progress, ScenarioError, ScenarioResult, Servers
from cryptopipe.measure.faults.injectors import (
    cut_network,
    kill_consumer,
    kill_ingest,
    kill_partition_leader,
    restart_broker,
    restart_redis,
)
from cryptopipe.measure.faults.scenario import run_scenario

# --- the scenarios -------------------------------------------------------------------------------


def leader_kill(servers: Servers, config: FaultConfig, progress: Progress | None = None) -> ScenarioResult:
    """The busiest partition's leader SIGKILLed on the cluster, then restarted."""
    cluster = servers.cluster
    if cluster is None or len(cluster.brokers) < 3:
        raise ScenarioError("leader-kill needs a cluster of at least 3 brokers (Servers.cluster)")
    replication = cluster.replication
    return run_scenario(
        "leader-kill",
        servers,
        config,
        kill_partition_leader,
        replication_factor=replication,
        progress=progress,
    )


def broker_restart(servers: Servers, config: FaultConfig, progress: Progress | None = None) -> ScenarioResult:
    """The single broker stopped and started again on its data directory."""
    broker = servers.kafka.server
    if broker is None or servers.kafka.quirks.memory_only:
        raise ScenarioError(
            f"broker-restart needs a local broker that keeps its data on disk, not {servers.kafka}"
        )
    return run_scenario("broker-restart", servers, config, restart_broker, progress=progress)


def network_cut(servers: Servers, config: FaultConfig, progress: Progress | None = None) -> ScenarioResult:
    """Every client connection to the broker cut by the TcpProxy for the outage."""
    proxy = servers.proxy
    if proxy is None or servers.kafka.bootstrap_servers != proxy.address:
        raise ScenarioError("network-cut needs the broker behind Servers.proxy (bootstrap = the proxy)")
    return run_scenario("network-cut", servers, config, cut_network, progress=progress)


def redis_restart(servers: Servers, config: FaultConfig, progress: Progress | None = None) -> ScenarioResult:
    """Redis (AOF on) SIGKILLed mid-stream and restarted on its directory."""
    server = servers.redis.server
    if not isinstance(server, RedisServer) or not server.appendonly:
        raise ScenarioError("redis-restart needs a local Redis started with appendonly=True")
    return run_scenario("redis-restart", servers, config, restart_redis, progress=progress)


def consumer_kill(servers: Servers, config: FaultConfig, progress: Progress | None = None) -> ScenarioResult:
    """The prices consumer SIGKILLed mid-stream and started again; with ``config.depth``, the
    books consumer with it."""
    return run_scenario("consumer-kill", servers, config, kill_consumer, progress=progress)


def ingest_kill(servers: Servers, config: FaultConfig, progress: Progress | None = None) -> ScenarioResult:
    """Ingest SIGKILLed mid-stream and started again: with ``config.depth``, every book resyncs
    from a fresh snapshot in a new epoch."""
    return run_scenario("ingest-kill", servers, config, kill_ingest, progress=progress)


RUNNERS: dict[str, Callable[[Servers, FaultConfig, Progress | None], ScenarioResult]] = {
    "leader-kill": leader_kill,
    "broker-restart": broker_restart,
    "network-cut": network_cut,
    "redis-restart": redis_restart,
    "consumer-kill": consumer_kill,
    "ingest-kill": ingest_kill,
}
