"""Fault scenarios on the prices path, reconciled trade by trade against Redis (docs/faults.md)."""

from cryptopipe.measure.faults.config import (
    ROW_FIELDS,
    SCENARIOS,
    FaultConfig,
    Progress,
    ScenarioError,
    ScenarioResult,
    Servers,
    stderr_progress,
)
from cryptopipe.measure.faults.kafka import cluster_endpoint, kafka_endpoint, redis_endpoint
from cryptopipe.measure.faults.monitor import Sample, lag_episode, recovery_seconds
from cryptopipe.measure.faults.scenarios import (
    RUNNERS,
    broker_restart,
    consumer_kill,
    leader_kill,
    network_cut,
    redis_restart,
)

__all__ = [
    "ROW_FIELDS",
    "RUNNERS",
    "SCENARIOS",
    "FaultConfig",
    "Progress",
    "Sample",
    "ScenarioError",
    "ScenarioResult",
    "Servers",
    "broker_restart",
    "cluster_endpoint",
    "consumer_kill",
    "kafka_endpoint",
    "lag_episode",
    "leader_kill",
    "network_cut",
    "recovery_seconds",
    "redis_endpoint",
    "redis_restart",
    "stderr_progress",
]
