"""Kafka -> Redis: one consumer loop, parameterised by a sink, writing idempotently.

``ConsumerLoop(PriceSink(redis), ...)`` keeps the latest price (never backwards) and a capped
history per symbol; ``ConsumerLoop(AlertSink(redis), ...)`` keeps a capped alert feed with each
alert exactly once. ``PriceStore`` / ``AlertStore`` are the read side for the dashboard.
"""

from cryptopipe.store.alerts import AlertSink, AlertStore
from cryptopipe.store.consumer import consumer_config
from cryptopipe.store.errors import ConfigError, ConsumerFatalError, StoreError
from cryptopipe.store.latency import LatencyReservoir
from cryptopipe.store.loop import ConsumerLoop, LoopStats
from cryptopipe.store.prices import PriceSink, PriceStore, history_member, price_keys
from cryptopipe.store.sink import Sink, WriteResult, connect_redis, delete_prefixed

__all__ = [
    "AlertSink",
    "AlertStore",
    "ConfigError",
    "ConsumerFatalError",
    "ConsumerLoop",
    "LatencyReservoir",
    "LoopStats",
    "PriceSink",
    "PriceStore",
    "Sink",
    "StoreError",
    "WriteResult",
    "connect_redis",
    "consumer_config",
    "delete_prefixed",
    "history_member",
    "price_keys",
]
