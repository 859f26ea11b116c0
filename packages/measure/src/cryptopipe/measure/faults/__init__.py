"""Fault scenarios on the prices path (and the order books), reconciled trade by trade against
Redis, the books against the exchange's and Kafka (docs/faults.md)."""

from cryptopipe.measure.faults.books import BookCosts, BookWatch, book_costs
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
    ingest_kill,
    leader_kill,
    network_cut,
    redis_restart,
)

__all__ = [
    "ROW_FIELDS",
    "RUNNERS",
    "SCENARIOS",
    "BookCosts",
    "BookWatch",
    "FaultConfig",
    "Progress",
    "Sample",
    "ScenarioError",
    "ScenarioResult",
    "Servers",
    "book_costs",
    "broker_restart",
    "cluster_endpoint",
    "consumer_kill",
    "ingest_kill",
    "kafka_endpoint",
    "lag_episode",
    "leader_kill",
    "network_cut",
    "recovery_seconds",
    "redis_endpoint",
    "redis_restart",
    "stderr_progress",
]
